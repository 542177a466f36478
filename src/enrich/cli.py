"""The engine's command line: run --direct, plan, try, status, partitions, sim, bench.

Scripts and schedulers depend on this surface: ``enrich run CONFIG --set KEY=VALUE`` (exit code
0 only when the dataset is committed), ``enrich sim --port PORT``, ``enrich plan CONFIG``,
``enrich status OUTPUT_URL``, ``enrich partitions CONFIG``; ``run`` and ``plan`` take
``--partition DATE`` for a job whose input path has a ``{date}`` field.

A failure the commands expect (a bad config, unreadable input, a refused override) ends as one
line and exit code 2 (1 for a run that failed); anything else as one line
``error: <Type>: <message>`` and exit code 1, with the traceback only under ``--debug`` (before
the command, or on ``run``), and never the local variables of its frames (they hold keys).

The engine knows nothing of Prefect: :func:`build_app` makes the commands, and ``run`` goes
through a flow only when the layer above hands it a :class:`FlowRunner`. The ``enrich`` command
is that layer's (:mod:`enrich_flows.cli`: these commands, ``run`` through the flow when an
orchestration API is configured or ``--prefect`` asks for it, and ``demo``); ``python -m
enrich.cli`` is the engine alone and runs ``--direct``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from enrich.bench.cli import bench_command
from enrich.catalogue.command import models_command
from enrich.config import JobConfig, load_job_config, refuse_api_overrides
from enrich.errors import EnrichError
from enrich.reload import sighup_logged
from enrich.sim.cli import sim_command
from enrich.storage.errors import redact_secrets
from enrich.trial.command import try_command

if TYPE_CHECKING:
    from enrich.engine import ProgressObserver, RunProgress
    from enrich.job import Job

console = Console(stderr=True)

SET_HELP = "Override a config key, e.g. --set execution.max_concurrency=128 (repeatable)."
PARTITION_HELP = "The partition (YYYY-MM-DD) of a job whose input.path has a {date} field."
DEBUG_HELP = "Show the traceback of an unexpected error."


@dataclasses.dataclass
class _Options:
    """What the global options of this invocation chose (reset by each invocation)."""

    debug: bool = False


_options = _Options()


class _App(typer.Typer):
    """The command line: an unexpected error ends as one line, its traceback only with --debug."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if _options.debug:
                raise  # Typer prints it, without locals (see build_app)
            text = " ".join(redact_secrets(str(exc)).split())
            name = type(exc).__name__
            console.print(f"error: {escape(name)}: {escape(text)}", highlight=False, soft_wrap=True)
            raise SystemExit(1) from None


def _global_options(
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Enrich Parquet/JSONL datasets with Cerebras chat completions."""
    _options.debug = debug


def _load(config: str, overrides: list[str], partition: str | None = None) -> JobConfig:
    from enrich.partitions import for_partition

    try:
        refuse_api_overrides(overrides, config)
        return for_partition(load_job_config(config, overrides), partition)
    except EnrichError as exc:
        _fail(exc)


def _fail(exc: BaseException, code: int = 2) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _warn(notes: tuple[str, ...]) -> None:
    """The job's warnings (a deprecated model, say), one line each."""
    for note in notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


def _watch_progress(stop: threading.Event, observed: list[RunProgress]) -> None:
    """Draw a progress bar from the run's live counters (read-only, from a thread)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("rows", total=None)
        while not stop.wait(0.2):
            if observed:
                p = observed[-1]
                bar.update(
                    task,
                    total=p.rows_total or None,
                    completed=p.rows_done,
                    description=f"rows ({p.requests} requests)",
                )


class FlowRunner(Protocol):
    """Runs prepared jobs through a flow, for the layer that knows the orchestrator."""

    def configured(self) -> str | None:
        """The orchestration API that flow runs report to, or None when none is configured."""
        ...

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
        """``(complete, figures, message)``; ``observer`` gets the run's live counters."""
        ...


RETRY_ERRORS_HELP = (
    "Ask again for every error row, those the request itself caused (a 400, a context "
    "overflow, a truncated answer) included; other error rows are always asked again."
)
RUN_HELP = (
    "Enrich a dataset; exit 0 only when the output is committed. Runs the Prefect flow when a "
    "Prefect API is configured (PREFECT_API_URL or the active profile), else the engine directly."
)
BUDGET_HELP = (
    "Stop the run before it spends more than this many US dollars (the same as "
    "--set budget.max_usd=X); rerun with a higher budget to resume."
)
PREFECT_HELP = "Run the Prefect flow even with no Prefect API configured (on a temporary server)."
NO_API_NOTE = (
    "no Prefect API configured (PREFECT_API_URL or the active profile): running the engine "
    "directly; --prefect runs the flow on a temporary Prefect server"
)
UNSHARDED_NOTE = (
    "execution.parallelism {}: shards run as Prefect flow runs on workers; without the flow "
    "this run does the whole job itself"
)
DIRECT_RUN_HELP = "Enrich a dataset with the engine (--direct); exit 0 only when it is committed."


def run_command(flow_runner: FlowRunner | None) -> Callable[..., None]:
    """The ``run`` command: the engine, or ``flow_runner`` (see :func:`runs_flow`)."""

    @sighup_logged()  # kill -HUP never ends a run, before the engine opens or after it closes
    def run(
        config: str = typer.Argument(..., help="Job config YAML."),
        set_: list[str] = typer.Option([], "--set", help=SET_HELP),
        direct: bool = typer.Option(False, "--direct", help="Run the engine without Prefect."),
        prefect: bool = typer.Option(False, "--prefect", help=PREFECT_HELP),
        partition: str | None = typer.Option(None, "--partition", help=PARTITION_HELP),
        retry_errors: bool = typer.Option(False, "--retry-errors", help=RETRY_ERRORS_HELP),
        budget_usd: float | None = typer.Option(None, "--budget-usd", help=BUDGET_HELP),
        debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    ) -> None:
        from enrich.job import Job

        if budget_usd is not None:
            set_ = [*set_, f"budget.max_usd={budget_usd}"]
        _options.debug = _options.debug or debug
        if direct and prefect:
            raise typer.BadParameter("pass one of --direct and --prefect", param_hint="--prefect")
        if not direct and flow_runner is None:
            raise typer.BadParameter(
                "this command runs the engine only: pass --direct, or use `enrich run` "
                "for the Prefect flow",
                param_hint="--direct",
            )
        cfg = _load(config, set_, partition)
        try:
            job = Job.prepare(cfg, where=config)  # every input check, before anything is spent
        except EnrichError as exc:
            _fail(exc)
        _warn(job.notes)
        stop = threading.Event()
        watcher = None
        observed: list[RunProgress] = []  # the run hands its counters over here when it starts
        if sys.stderr.isatty():
            watcher = threading.Thread(target=_watch_progress, args=(stop, observed), daemon=True)
            watcher.start()
        through_flow = flow_runner is not None and runs_flow(flow_runner, direct, prefect)
        if not through_flow and cfg.execution.parallelism > 1:
            console.print(UNSHARDED_NOTE.format(cfg.execution.parallelism), highlight=False)
        try:
            if flow_runner is None or not through_flow:
                from enrich.run import run_job

                summary = asyncio.run(
                    run_job(job, observer=observed.append, retry_errors=retry_errors)
                )
                figures, ok = summary.table()[0], summary.complete
                message = summary.message
            else:
                # The flow run uses this job: the input is discovered and counted once.
                ok, figures, message = flow_runner.run(
                    job,
                    config,
                    set_,
                    partition,
                    observer=observed.append,
                    retry_errors=retry_errors,
                )
        except EnrichError as exc:
            _fail(exc, 1)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        _print_figures(figures)
        style = "[green]" if ok else "[red]"
        console.print(style + escape(message), highlight=False, soft_wrap=True)
        if not ok:
            raise typer.Exit(1)

    return run


def runs_flow(flow_runner: FlowRunner, direct: bool, prefect: bool) -> bool:
    """Whether ``run`` goes through the flow: asked for, or an orchestration API is configured.

    With neither flag and no API configured it says, in one line, that the engine runs directly.
    """
    if direct or prefect:
        return prefect
    if flow_runner.configured() is not None:
        return True
    console.print(NO_API_NOTE, highlight=False, soft_wrap=True)
    return False


def _print_figures(figures: dict[str, Any]) -> None:
    if not figures:
        return
    table = Table(show_header=False, box=None)
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)


def plan(
    config: str = typer.Argument(..., help="Job config YAML."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    partition: str | None = typer.Option(None, "--partition", help=PARTITION_HELP),
) -> None:
    """Rows, chunks, estimated tokens, cost and duration, before anything is spent."""
    from enrich.forecast import forecast, plan_rows
    from enrich.job import Job
    from enrich.steps.budget import budget_warning
    from enrich.structured import OutputSchemaRefused

    cfg = _load(config, set_, partition)
    try:
        job = Job.prepare(cfg, where=config)
        pending = job.pending()
        tallies = job.tally_prompts(pending)  # every row to send, rendered and counted
    except OutputSchemaRefused as exc:
        for line in exc.lines():  # every finding, one line each: fix them all in one go
            console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except EnrichError as exc:
        _fail(exc)
    _warn(job.notes)
    table = Table(title=f"plan: {cfg.name}", show_header=False)
    for key, value in plan_rows(job, pending, forecast(job, pending, tallies)):
        table.add_row(key, value)
    # A pipe gets whole lines: scripts grep them.
    Console(width=None if sys.stdout.isatty() else 1000).print(table)
    for step in job.steps:  # a rule of thumb until a sample run measures the reasoning
        warning = budget_warning(step.kind.model, step.kind.params)
        if warning is not None:
            where = "params" if step.name is None else f"steps.{step.name}"
            console.print(f"[yellow]warning:[/yellow] {where}: {escape(warning)}", soft_wrap=True)


def status(
    output_url: str = typer.Argument(..., help="The job's output location."),
    option: list[str] = typer.Option([], "--storage-option", help="fsspec option KEY=VALUE."),
) -> None:
    """What is committed under an output location and what is pending."""
    from enrich.output.reader import output_status

    options = _storage_options(option)
    try:
        result = output_status(output_url, options)
    except EnrichError as exc:
        _fail(exc)
    for line in result.lines():
        print(line)


def _storage_options(given: list[str]) -> dict[str, str]:
    """``--storage-option KEY=VALUE`` values as a dict; a malformed one is a one-line error."""
    options: dict[str, str] = {}
    for option in given:
        key, equals, value = option.partition("=")
        if not (equals and key.strip()):
            _fail(ValueError(f"--storage-option {option!r}: expected KEY=VALUE"))
        options[key] = value
    return options


def partitions(
    config: str = typer.Argument(..., help="Job config YAML (input.path with a {date} field)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    start: str | None = typer.Option(None, help="First partition, YYYY-MM-DD."),
    end: str | None = typer.Option(None, help="Last partition, YYYY-MM-DD."),
) -> None:
    """The partitions with input, and whether each is committed under the current config."""
    from enrich.partitions import list_partitions, partition_state, select

    try:
        refuse_api_overrides(set_, config)
        cfg = load_job_config(config, set_)
        states = [partition_state(cfg, d) for d in select(list_partitions(cfg), start, end)]
    except EnrichError as exc:
        _fail(exc)
    table = Table(title=f"partitions: {cfg.name}")
    for column in ("partition", "state", "rows", "output"):
        table.add_column(column)
    for s in states:
        state = "committed" if s.committed else "pending"
        table.add_row(s.partition, state, "" if s.rows is None else str(s.rows), s.output_url)
    Console().print(table)


def build_app(flow_runner: FlowRunner | None = None) -> typer.Typer:
    """The command line; ``run`` may go through ``flow_runner`` (see :func:`runs_flow`)."""
    app = _App(
        add_completion=False,
        no_args_is_help=True,
        help="Enrich Parquet/JSONL datasets with Cerebras chat completions.",
        # A frame's locals hold API keys and storage credentials: never print them.
        pretty_exceptions_show_locals=False,
    )
    app.callback()(_global_options)
    app.command("sim")(sim_command)
    app.command("bench")(bench_command)
    app.command("models")(models_command)
    app.command("run", help=DIRECT_RUN_HELP if flow_runner is None else RUN_HELP)(
        run_command(flow_runner)
    )
    app.command()(plan)
    app.command()(status)
    app.command()(partitions)
    app.command("try")(try_command)
    return app


app = build_app()

if __name__ == "__main__":
    app()
