"""The ``try`` command: a sample run of the job and its variants, shown side by side.

Prints the comparison's tables (:mod:`.report`), writes the HTML report (``--html``, by
default ``try-<job>.html`` in the working directory) and, with ``--json``, the comparison
for machines. Errors are one line, before anything is sent where they can be (exit 2), or
what stopped a variant's sample (exit 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from enrich.errors import ConfigError, EnrichError

__all__ = ["try_command"]

SAMPLE_HELP = "Rows in the sample, picked by the hash of their row id (the same rows every time)."
VARIANT_HELP = (
    "Another job to compare on the same rows: a YAML file, or KEY=VALUE overrides of the job "
    "(model=zai-glm-4.7; several joined by commas). Repeatable."
)
STRATIFY_HELP = "Take the sample evenly from each value of this input column."
GOLD_HELP = (
    "An input column of right answers: each variant's accuracy on the typed field of that "
    "name, the only one, or the one named after '=' (--gold label=triage.sentiment)."
)
SET_HELP = "Override a config key of every variant, e.g. --set execution.max_concurrency=16."

_err = Console(stderr=True)


def _fail(exc: BaseException, code: int) -> typer.Exit:
    _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def try_command(
    config: str = typer.Argument(..., help="Job config YAML."),
    sample: int = typer.Option(20, "--sample", min=1, help=SAMPLE_HELP),
    variant: list[str] = typer.Option([], "--variant", help=VARIANT_HELP),
    stratify: str | None = typer.Option(None, "--stratify", help=STRATIFY_HELP),
    gold: str | None = typer.Option(None, "--gold", help=GOLD_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    partition: str | None = typer.Option(None, "--partition", help="The partition (YYYY-MM-DD)."),
    html: Path | None = typer.Option(
        None, "--html", help="The HTML report (default: try-<job>.html)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the comparison as JSON."),
) -> None:
    """Run the job on a sample of rows and compare it with variants, before the full run.

    Every sampled result stays in each job's output: its full run does not pay for them again.
    """
    # Imported here: the command line starts without loading the engine.
    from enrich.trial.html import to_html
    from enrich.trial.report import print_comparison
    from enrich.trial.tryout import try_jobs
    from enrich.trial.variants import load_variants, prepare_variants

    try:
        variants = load_variants(config, variant, set_, partition)
        jobs = prepare_variants(variants)
    except EnrichError as exc:
        raise _fail(exc, 2) from None
    labels = [v.label for v in variants]
    try:
        comparison = asyncio.run(try_jobs(labels, jobs, sample, stratify=stratify, gold=gold))
    except ConfigError as exc:  # a stratify or gold column the input lacks: nothing sent
        raise _fail(exc, 2) from None
    except EnrichError as exc:
        raise _fail(exc, 1) from None
    print_comparison(comparison, Console())
    target = html or Path(f"try-{comparison.job}.html")
    target.write_text(to_html(comparison), encoding="utf-8")
    _err.print(f"report: {target}", highlight=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(comparison.to_json(), option=orjson.OPT_INDENT_2))
