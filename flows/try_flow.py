"""The ``enrich-try`` flow: ``enrich try`` as a flow run, its comparison published.

The same sample run as the command (:func:`enrich.trial.tryout.try_jobs`): the job and its
``variants`` on one sample, every result journaled under each job's output for its full
run. The comparison is published as a keyed table (one row per variant) and a markdown
report (``try-<job>`` and ``try-<job>-report``), the API key redacted from both, and
returned as JSON.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from enrich.trial.comparison import Comparison
from enrich.trial.report import describe_sample, to_markdown
from enrich.trial.tryout import try_jobs
from enrich.trial.variants import load_variants, prepare_variants
from enrich_flows.enrich import api_key_from_secret_block, job_name
from enrich_tasks.monitoring import artifact_key, publish_report, run_tags, tag_current_run

__all__ = ["enrich_try", "figures_rows"]


def figures_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One table row per variant: its rates, figures per row and the full run projected."""
    rows = []
    for v in comparison.variants:
        p = v.projection
        rows.append(
            {
                "variant": v.label,
                "model": v.model,
                "rows_ok": v.ok,
                "error_rate": round(v.error_rate, 4),
                "invalid_rate": round(v.invalid_rate, 4),
                "prompt_tokens_per_row": round(v.prompt_tokens_per_row, 1),
                "completion_tokens_per_row": round(v.completion_tokens_per_row, 1),
                "reasoning_tokens_per_row": round(v.reasoning_tokens_per_row, 1),
                "cost_per_row_usd": v.cost_per_row_usd,
                "latency_p50_s": v.latency_s["p50"],
                "latency_p95_s": v.latency_s["p95"],
                "full_run_cost_usd": None if p is None else round(p.cost_usd, 6),
                "full_run_duration_s": None if p is None else p.duration_s,
            }
        )
    return rows


def _run_name() -> str:
    """``try-<job>``: the job's name, as the other flows name their runs, not the config path."""
    params: dict[str, Any] = dict(flow_run.parameters)
    return f"try-{job_name(str(params.get('config', 'job')))}"


@flow(name="enrich-try", flow_run_name=_run_name)
async def enrich_try(
    config: str,
    sample: int = 20,
    variants: list[str] | None = None,
    overrides: list[str] | None = None,
    stratify: str | None = None,
    gold: str | None = None,
    partition: str | None = None,
) -> dict[str, Any]:
    """Run ``config`` and its ``variants`` (YAML paths or ``KEY=VALUE`` overrides) on a
    sample of ``sample`` rows and publish the comparison."""
    loaded = load_variants(config, variants or [], overrides or [], partition)
    await tag_current_run(run_tags(loaded[0].config))
    jobs = prepare_variants(loaded)
    api_key = await api_key_from_secret_block(loaded[0].config)
    comparison = await try_jobs(
        [v.label for v in loaded], jobs, sample, stratify=stratify, gold=gold, api_key=api_key
    )
    get_run_logger().info("try %s: %s", comparison.job, describe_sample(comparison))
    await publish_report(
        artifact_key("try", comparison.job),
        figures_rows(comparison),
        to_markdown(comparison),
        f"try: {comparison.job}, {describe_sample(comparison)}",
        secrets=[api_key],
    )
    return comparison.to_json()
