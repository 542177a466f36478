"""The benchmark's job: generated reviews, the config that enriches them, the same requests bare.

Both sides of a comparison send the same requests: the pipeline renders them from the input
file with the job's template, and the bare loop builds the identical messages directly
(:func:`bare_messages`), so neither sends more tokens than the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

MODEL = "gpt-oss-120b"
SYSTEM = "Classify the sentiment of the review as positive, negative or neutral."
TEMPLATE = "Rating {rating}: {text}"
MAX_COMPLETION_TOKENS = 64
API_KEY = "bench-key-for-the-local-simulator"

_MOODS = ("did well", "broke after a week", "was fine", "exceeded every hope", "arrived late")


def review(i: int) -> dict[str, Any]:
    """Row ``i`` of the input: distinct text for every ``i``, so no two requests share a call."""
    return {
        "review_id": f"r-{i:07d}",
        "rating": 1 + i % 5,
        "text": f"Review {i}: the product {_MOODS[i % len(_MOODS)]} and I would say so again.",
    }


def bare_messages(n: int, offset: int = 0) -> list[list[dict[str, str]]]:
    """The messages the job's template renders for rows ``offset .. offset + n - 1``."""
    out = []
    for i in range(offset, offset + n):
        row = review(i)
        user = TEMPLATE.format(rating=row["rating"], text=row["text"])
        out.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
    return out


def write_input(path: Path, n: int, offset: int = 0) -> Path:
    """Write rows ``offset .. offset + n - 1`` as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for i in range(offset, offset + n):
            f.write(orjson.dumps(review(i)) + b"\n")
    return path


def write_job(
    folder: Path,
    *,
    input_path: Path,
    base_url: str,
    name: str = "bench",
    concurrency: int = 64,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    rows_per_chunk: int | None = 1000,
    chunks_in_flight: int = 4,
) -> Path:
    """Write a job config enriching ``input_path`` into ``folder/out``; returns its path.

    ``rows_per_chunk=None`` leaves the chunk size to the job (the automatic size).
    """
    execution: dict[str, Any] = {
        "max_concurrency": concurrency,
        "chunks_in_flight": chunks_in_flight,
    }
    if rows_per_chunk is not None:  # else the automatic size
        execution["rows_per_chunk"] = rows_per_chunk
    if requests_per_minute is not None:
        execution["requests_per_minute"] = requests_per_minute
    if tokens_per_minute is not None:
        execution["tokens_per_minute"] = tokens_per_minute
    config = {
        "name": name,
        "input": {"path": str(input_path), "id_column": "review_id"},
        "prompt": {"system": SYSTEM, "template": TEMPLATE},
        "model": MODEL,
        "params": {"max_completion_tokens": MAX_COMPLETION_TOKENS},
        "output": {"path": str(folder / "out")},
        "execution": execution,
        "api": {"base_url": base_url},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
