"""Shards as flow runs: one deployment run per shard, started again when it may yet finish.

:func:`enrich.shards.run_sharded` hands a sharded run's plan to :class:`ShardRuns`, which starts
one run of the job's deployment per shard (``enrich-dataset/enrich`` unless the coordinator is
itself a run of another deployment of the flow), linked to the coordinating run so the UI shows
them as its children, and follows them to their end. Each shard runs on whichever worker polls
first, so a job scales out by starting more workers.

A shard's run whose process died (a worker killed, a machine lost) often never reaches a final
state by itself: the server only sees it stop talking. The shard's lease tells (it expires, or
names a process of this machine that is gone, :func:`enrich.shards.runner_gone`): the run is
then marked Crashed. A shard whose run crashed, either way, is started again as a new run once
its lease is free, and so is one whose run failed without recording a stop of the job
(:mod:`enrich.shards.ending`: rows that failed transiently, the Prefect API failing), up to
:data:`ATTEMPTS` runs in all. A run that recorded a stop (its budget share spent, the day's
quota gone, a changed input) or was cancelled is not. The new run finds the chunks its
predecessor committed and the results its journal kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment as this_deployment
from prefect.runtime import flow_run as this_flow_run
from prefect.states import Crashed

from enrich.config import JobConfig
from enrich.errors import ConfigError
from enrich.lease import read_lease
from enrich.output.layout import LAYOUT
from enrich.shards import ShardOutcome, ShardPlan, ShardRef, runner_gone
from enrich.shards.ending import RunEnd, read_end, restarts
from enrich.storage import Store
from enrich_tasks.monitoring import run_tags

__all__ = ["ATTEMPTS", "ORPHANED", "SHARD_DEPLOYMENT", "ShardRuns", "shard_deployment"]

#: The deployment shards run as when the coordinator is not a deployment's run itself.
SHARD_DEPLOYMENT = "enrich-dataset/enrich"
#: Runs of one shard started in all, counting the first, before its failure is the run's.
ATTEMPTS = 3
POLL_S = 2.0
#: How long after a failed run the shard is started again: a failing API is not hammered.
RESTART_DELAY_S = 5.0
#: The name of the Cancelled state a shard's run ends in when it finds its coordinator gone.
ORPHANED = "Orphaned"


async def shard_deployment(parallelism: int) -> str:
    """The deployment the shards run as, checked to exist: the deployment of this run when it
    is one of this flow's (a subflow of another flow's deployment is not), else
    :data:`SHARD_DEPLOYMENT`. ConfigError in one line when the server does not have it."""
    name = SHARD_DEPLOYMENT
    async with get_client() as client:
        own = this_deployment.get_id()
        if own is not None:
            deployment = await client.read_deployment(UUID(str(own)))
            flow = await client.read_flow(deployment.flow_id)
            if flow.name == this_flow_run.get_flow_name():
                name = f"{flow.name}/{deployment.name}"
        try:
            await client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ConfigError(
                f"execution.parallelism {parallelism}: shards run as flow runs of the deployment "
                f"{name}, which the Prefect server does not have; deploy it (prefect deploy "
                "--all) and start a worker, or set execution.parallelism=1"
            ) from None
    return name


@dataclass
class ShardRuns:
    """Runs every shard of a plan as a deployment run and says how each ended."""

    cfg: JobConfig
    parameters: dict[str, object]  # the coordinator's: config, overrides, partition
    deployment: str
    store: Store
    label: str
    log: Callable[[str], None]
    ended: int = 0
    count: int = 0

    @property
    def share_done(self) -> float:
        return self.ended / self.count if self.count else 0.0

    async def __call__(self, plan: ShardPlan) -> Sequence[ShardOutcome]:
        refs = plan.refs()
        self.count = len(refs)
        self.log(f"{self.label}: {len(refs)} shards as runs of {self.deployment}")
        return await asyncio.gather(*(self._follow(plan, ref) for ref in refs))

    async def _follow(self, plan: ShardPlan, ref: ShardRef) -> ShardOutcome:
        try:
            why = ""
            for attempt in range(1, ATTEMPTS + 1):
                if attempt > 1:
                    self.log(f"{self.label} {ref.label}: {why}; starting it again")
                    await asyncio.sleep(RESTART_DELAY_S)
                run_id = await self._start(plan, ref, attempt)
                outcome, why = await self._watch(ref, run_id)
                if outcome is not None:
                    return outcome
            return ShardOutcome(ref, False, f"{ATTEMPTS} runs ended unfinished, the last: {why}")
        finally:
            self.ended += 1

    async def _start(self, plan: ShardPlan, ref: ShardRef, attempt: int) -> UUID:
        partition = self.parameters.get("partition")
        name = f"{self.cfg.name}-{partition}" if partition else self.cfg.name
        run = await arun_deployment(
            self.deployment,
            parameters={**self.parameters, "shard": str(ref)},
            flow_run_name=f"{name}-shard-{ref.number}-of-{ref.count}",
            tags=["shard", *run_tags(self.cfg)],
            # A coordinator retried by Prefect finds the runs it started already.
            idempotency_key=f"shard-{plan.run}-{ref.number}-{attempt}",
            timeout=0,
            as_subflow=True,
        )
        return run.id

    async def _released(self, ref: ShardRef) -> None:
        """Wait until shard ``ref``'s lease is free: gone, or naming a runner that stopped."""
        key = LAYOUT.shard_lease(ref.run, ref.number)
        while await asyncio.to_thread(read_lease, self.store, key) is not None:
            if await asyncio.to_thread(runner_gone, self.store, ref):
                return
            await asyncio.sleep(POLL_S)

    async def _watch(self, ref: ShardRef, run_id: UUID) -> tuple[ShardOutcome | None, str]:
        """The shard's outcome once its run ended, or None and why when the shard is to be
        started again (:func:`enrich.shards.ending.restarts`): its run crashed, its lease says
        its runner stopped (the run is then marked Crashed), or it failed with no stop of the
        job recorded."""
        async with get_client() as client:
            while True:
                run = await client.read_flow_run(run_id)
                state = run.state
                if state is not None and state.is_final():
                    ended = _run_end(state)
                    message = "" if ended == "completed" else (state.message or state.type.value)
                    end = None
                    if ended == "failed":
                        end = await asyncio.to_thread(read_end, self.store, ref)
                    if not restarts(ended, end):
                        if end is None:
                            return ShardOutcome(ref, ended == "completed", message), ""
                        return ShardOutcome(ref, False, end.message, end.stopped), ""
                    await self._released(ref)  # its lease may outlive it for a while
                    said = "found the job run gone" if ended == "orphaned" else ended
                    return None, f"its run {said}: {message}"
                if await asyncio.to_thread(runner_gone, self.store, ref):
                    await client.set_flow_run_state(
                        run_id,
                        Crashed(message=f"{ref.label}: its runner stopped (lease not renewed)"),
                        force=True,
                    )
                    return None, "its runner stopped (its lease was not renewed)"
                await asyncio.sleep(POLL_S)


def _run_end(state: State) -> RunEnd:
    """How a flow run in a final ``state`` ended, for :func:`enrich.shards.ending.restarts`."""
    if state.is_completed():
        return "completed"
    if state.is_crashed():
        return "crashed"
    if state.is_cancelled():
        return "orphaned" if state.name == ORPHANED else "cancelled"
    return "failed"
