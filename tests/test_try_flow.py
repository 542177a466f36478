"""The ``enrich-try`` flow against a real Prefect server: the comparison as artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect_api import artifacts, flow_run, run_id, table

from enrich.sim.harness import ThreadedSimulator
from enrich_flows.try_flow import enrich_try

pytest_plugins = ["prefect_harness"]
pytestmark = [pytest.mark.prefect, pytest.mark.slow, pytest.mark.usefixtures("in_repo")]


async def test_the_try_flow_publishes_the_comparison(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    state = await enrich_try(
        "configs/reviews.yaml",
        sample=10,
        variants=["model=zai-glm-4.7"],
        overrides=[f"output.path={tmp_path / 'reviews'}"],
        stratify="rating",
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert flow_run(run_id(state)).name == "try-reviews"  # the job's name, not the config path
    assert sim.stats.requests == 10 * 2 * 2  # 10 rows, two steps, two variants
    comparison = await state.result()
    assert [v["model"] for v in comparison["variants"]] == ["gpt-oss-120b", "zai-glm-4.7"]
    found = artifacts(run_id(state))
    rows = table(found["try-reviews"])
    assert [r["variant"] for r in rows] == ["reviews", "model=zai-glm-4.7"]
    assert all(r["rows_ok"] == 10 and r["cost_per_row_usd"] > 0 for r in rows)
    report = str(found["try-reviews-report"].data)
    for heading in ("## example rows", "## figures", "## distributions", "## agreement"):
        assert heading in report
    assert "| triage.sentiment | " in report
