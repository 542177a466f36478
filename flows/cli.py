"""The ``enrich`` command: the engine's commands, ``run`` through the Prefect flow, ``demo``.

:func:`enrich.cli.build_app` makes the commands; this layer gives ``run`` the flow (unless
``--direct``) and adds ``demo``. The job ``run`` prepared is the one the flow run uses, so
the input is read once. Prefect is imported only by the commands that run a flow.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer

from enrich.cli import build_app
from enrich_flows.prefect_api import configured_api_url

if TYPE_CHECKING:
    from enrich.engine import ProgressObserver
    from enrich.job import Job


def prefect_defaults() -> None:
    """Settings for an in-process (ephemeral) Prefect server, unless the user chose otherwise.

    A first start on a fresh or busy machine (database migrations) can take longer than
    Prefect's 20 s default; and nothing should phone home from an offline batch job.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


class PrefectRunner:
    """``enrich run`` through the ``enrich-dataset`` flow (:class:`enrich.cli.FlowRunner`)."""

    def configured(self) -> str | None:
        return configured_api_url()

    def run(
        self,
        job: Job,
        config: str,
        overrides: list[str],
        partition: str | None,
        *,
        observer: ProgressObserver,
        retry_errors: bool,
    ) -> tuple[bool, dict[str, Any], str]:
        prefect_defaults()
        from enrich_flows.enrich import run_enrich

        return run_enrich(
            config, overrides, partition, observer=observer, job=job, retry_errors=retry_errors
        )


app = build_app(flow_runner=PrefectRunner())


@app.command()
def demo(
    output: str = typer.Option("out/reviews", help="Where the demo writes its output."),
) -> None:
    """Run the sample job end to end (on the bundled simulator unless CEREBRAS_API_KEY is set)."""
    from enrich_flows.demo import run_demo

    # The demo's ephemeral Prefect server keeps its database in the project, apart from any
    # ~/.prefect database another Prefect version may have migrated.
    os.environ.setdefault("PREFECT_HOME", os.path.abspath(".prefect"))
    prefect_defaults()

    raise typer.Exit(run_demo(output))


if __name__ == "__main__":
    app()
