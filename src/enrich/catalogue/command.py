"""``enrich models``: the provider's models, their prices and limits, and where the data is from.

One row per model: id, USD per million input and output tokens, context length, longest
completion, structured outputs, reasoning, status (``active``, ``preview``, ``deprecated
(retires DATE)``, ``retired DATE``) and, when the key could be asked, whether it may use the
model; then one line naming the source (live, cache or snapshot) and its date. A figure the
provider does not publish is ``?``.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from enrich.catalogue.entry import Catalogue, ModelEntry
from enrich.catalogue.resolve import load_catalogue
from enrich.config.schema import ApiSpec
from enrich.errors import EnrichError

__all__ = ["models_command", "models_table"]

_STATUS_ORDER = {"active": 0, "preview": 1, "deprecated": 2, "retired": 3}


def _price(value: float | None) -> str:
    if value is None:
        return "?"
    return f"${value:.2f}" if round(value, 2) == value else f"${value:g}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _yes(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def models_table(catalogue: Catalogue, today: date) -> Table:
    """The catalogue as a table, models in service first, then by id."""
    table = Table(title="models", caption=f"source: {catalogue.describe()}")
    columns = ["model", "input $/M", "output $/M", "context", "max completion"]
    columns += ["structured outputs", "reasoning", "status"]
    if catalogue.served is not None:
        columns.append("this key")
    for column in columns:
        table.add_column(column, no_wrap=True)

    def order(entry: ModelEntry) -> tuple[int, str]:
        return _STATUS_ORDER[entry.status(today)], entry.id

    for entry in sorted(catalogue.models.values(), key=order):
        row = [
            entry.id,
            _price(entry.input_per_million),
            _price(entry.output_per_million),
            _count(entry.context_length),
            _count(entry.max_completion_tokens),
            _yes(entry.structured_outputs),
            _yes(entry.reasoning),
            entry.describe_status(today),
        ]
        if catalogue.served is not None:
            row.append("may use" if entry.id in catalogue.served else "-")
        table.add_row(*row)
    return table


def models_command(
    base_url: Annotated[
        str | None,
        typer.Option(help="The provider (default: CEREBRAS_BASE_URL, else api.cerebras.ai)."),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask the provider even if the cache is fresh.")
    ] = False,
) -> None:
    """The provider's models: prices, context, limits, capabilities and status."""
    err = Console(stderr=True)
    try:
        api = ApiSpec(base_url=base_url)
        catalogue = load_catalogue(api, os.environ, refresh=refresh)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        err.print(f"[red]error:[/red] --base-url: {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except EnrichError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    # A pipe gets the whole table: scripts grep it.
    out = Console() if sys.stdout.isatty() else Console(width=1000)
    out.print(models_table(catalogue, date.today()))
