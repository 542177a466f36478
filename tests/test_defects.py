"""Regression tests for smaller defects: each test failed before its fix.

* a renamed ``output.completion_column`` reuses the journaled results on a rerun;
* a nested value renders the same prompt (JSON) from Parquet and from JSONL;
* the token and cost columns of a committed dataset sum to what was paid for it;
* SIGHUP never ends an ``enrich run`` process, outside the engine's life too;
* a malformed ``--storage-option`` is a one-line error;
* every failing chunk is logged, and their count is reported.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from support import JobFactory, prepare_job, write_jsonl

# -- b. nested values render as JSON whatever the input format --------------------------------

NESTED = [
    {"review_id": "r-0", "meta": {"lang": "en", "tags": ["a", "b"], "score": 1.5}, "n": [1, 2]},
    {"review_id": "r-1", "meta": {"lang": "fr", "tags": [], "score": 0.0}, "n": [3]},
]


def test_a_nested_value_renders_the_same_json_from_parquet_and_jsonl(
    make_job: JobFactory, tmp_path: Path
) -> None:
    jsonl = write_jsonl(tmp_path / "in" / "nested.jsonl", NESTED)
    parquet = tmp_path / "in" / "nested.parquet"
    pq.write_table(pa.Table.from_pylist(NESTED), parquet)
    prompts = {}
    for source, fmt in ((jsonl, "jsonl"), (parquet, "parquet")):
        config = make_job(
            input={"path": str(source), "format": fmt},
            prompt={"system": "Describe.", "template": "meta={meta} n={n}"},
        )
        job = prepare_job(config)
        (chunk, table), *_ = job.iter_tables(job.chunks)
        prompts[fmt] = [m[-1]["content"] for m in job.render(chunk, table)[2]]
    assert prompts["parquet"] == prompts["jsonl"]
    assert prompts["parquet"][0] == 'meta={"lang":"en","tags":["a","b"],"score":1.5} n=[1,2]'
