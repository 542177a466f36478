"""One job over many flow runs: shards of chunks, one commit (see :mod:`enrich.shards.run`)."""

from enrich.shards.plan import ShardPlan, ShardRef, shard_count, split
from enrich.shards.run import (
    RunShards,
    ShardOutcome,
    job_run_gone,
    read_shard_plan,
    run_shard,
    run_sharded,
    runner_gone,
    shard_job,
    shards_for,
)

__all__ = [
    "RunShards",
    "ShardOutcome",
    "ShardPlan",
    "ShardRef",
    "job_run_gone",
    "read_shard_plan",
    "run_shard",
    "run_sharded",
    "runner_gone",
    "shard_count",
    "shard_job",
    "shards_for",
    "split",
]
