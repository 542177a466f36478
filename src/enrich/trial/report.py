"""A comparison as tables: for the terminal (rich), as markdown (the Prefect artifact).

:func:`sections` is the one layout every rendering shares, pure: the example rows, the
figures side by side (rates, tokens, cost and latency per row, the full run projected), each
typed field's distribution, and the agreement between variants and with the gold column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from enrich.trial.comparison import Comparison
from enrich.trial.figures import TOP_VALUES, Figures

__all__ = ["Section", "describe_sample", "print_comparison", "sections", "to_markdown"]


@dataclass(frozen=True, slots=True)
class Section:
    """One table: its title, column names and rows of text."""

    title: str
    header: list[str]
    rows: list[list[str]]


def usd(value: float, digits: int = 4) -> str:
    return f"${value:,.{digits}f}"


def share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unbounded by the limits"
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def describe_sample(c: Comparison) -> str:
    """One line: which rows the sample is."""
    how = f", stratified by {c.stratify}" if c.stratify else ""
    return f"{c.sample_rows} of {c.total_rows:,} rows (picked by the hash of each row id{how})"


def _figures_rows(variants: Sequence[Figures]) -> list[list[str]]:
    def row(name: str, values: Sequence[str]) -> list[str]:
        return [name, *values]

    rows = [
        row("model", [v.model for v in variants]),
        row("rows ok", [f"{v.ok} of {v.rows}" for v in variants]),
        row("error rate", [_errors(v) for v in variants]),
        row("invalid output", [share(v.invalid_rate) for v in variants]),
        row("requests sent", [f"{v.requests} ({v.reused} rows reused)" for v in variants]),
        row("prompt tokens / row", [f"{v.prompt_tokens_per_row:,.1f}" for v in variants]),
        row("completion tokens / row", [f"{v.completion_tokens_per_row:,.1f}" for v in variants]),
        row("reasoning tokens / row", [f"{v.reasoning_tokens_per_row:,.1f}" for v in variants]),
        row("cost / row", [usd(v.cost_per_row_usd, 6) for v in variants]),
        row(
            "latency p50 / p95 / p99 (s)",
            [" / ".join(_seconds(v.latency_s[p]) for p in ("p50", "p95", "p99")) for v in variants],
        ),
    ]
    projected = [v.projection for v in variants]
    if all(p is not None for p in projected):
        rows += [
            row(
                "full run: cost",
                [usd(p.cost_usd) + f" for {p.rows:,} rows" for p in projected if p],
            ),
            row(
                "still to send",
                [
                    f"{p.rows_to_send:,} rows, {usd(p.cost_to_send_usd)}, "
                    f"{p.tokens_to_send:,} tokens"
                    for p in projected
                    if p
                ],
            ),
            row(
                "duration",
                [
                    _duration(p.duration_s) + (f" ({p.bound_by})" if p.duration_s else "")
                    for p in projected
                    if p
                ],
            ),
        ]
    return rows


def _errors(v: Figures) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in v.error_kinds.items())
    return share(v.error_rate) + (f" ({kinds})" if kinds else "")


#: Values a distribution counts that are not values of the field; listed last.
_SPECIAL = ("(other)", "(none)")


def ranked_values(counted: Sequence[dict[str, int]]) -> tuple[list[str], list[dict[str, int]]]:
    """The values of several variants' distributions, and the distributions over them: the
    most frequent over all variants first (at most :data:`~.figures.TOP_VALUES`), then
    ``(other)`` (every value left out, in each variant) and ``(none)``."""
    totals: dict[str, int] = {}
    for d in counted:
        for value, n in d.items():
            totals[value] = totals.get(value, 0) + n
    ranked = sorted((v for v in totals if v not in _SPECIAL), key=lambda v: (-totals[v], v))
    shown = ranked[:TOP_VALUES]
    merged = []
    for d in counted:
        kept = {v: d[v] for v in shown if v in d}
        other = sum(n for v, n in d.items() if v not in kept and v != "(none)")
        if other:
            kept["(other)"] = other
        if "(none)" in d:
            kept["(none)"] = d["(none)"]
        merged.append(kept)
    values = shown + [v for v in _SPECIAL if any(v in d for d in merged)]
    return values, merged


def _count(counted: dict[str, int], value: str, rows: int) -> str:
    """A value's rows, with their share when each row has one value (not a list's items)."""
    if value not in counted:
        return ""
    n = counted[value]
    return f"{n} ({n / rows:.0%})" if sum(counted.values()) == rows else str(n)


def sections(c: Comparison) -> list[Section]:
    """The tables of a comparison, in the order they are shown."""
    labels = [v.label for v in c.variants]
    gold = [c.gold_column] if c.gold_column else []
    examples = Section(
        "example rows",
        ["row", "input", *gold, *labels],
        [[e.row_id, e.shown, *([e.gold or ""] if gold else []), *e.answers] for e in c.examples],
    )
    figures = Section("figures", ["", *labels], _figures_rows(c.variants))
    out = [examples, figures]
    if c.fields:
        dist_rows: list[list[str]] = []
        for name in c.fields:
            values, counted = ranked_values(
                [dict(v.distributions.get(name, [])) for v in c.variants]
            )
            for i, value in enumerate(values):
                cells = [_count(d, value, v.rows) for d, v in zip(counted, c.variants, strict=True)]
                dist_rows.append([name if i == 0 else "", value, *cells])
        out.append(Section("distributions", ["field", "value", *labels], dist_rows))
    if c.agreement or c.accuracy:
        rows = [
            [f"agreement with {labels[0]}: {name}", *(share(s) or "–" for s in shares)]
            for name, shares in c.agreement.items()
        ]
        if c.accuracy:
            name = f"accuracy: {c.gold_field} = {c.gold_column}"
            rows.append([name, *(share(a) or "–" for a in c.accuracy)])
        out.append(Section("agreement", ["", *labels], rows))
    return out


def print_comparison(c: Comparison, console: Console) -> None:
    """The comparison as rich tables."""
    console.print(
        f"[bold]try: {c.job}[/bold]: {describe_sample(c)}", highlight=False, soft_wrap=True
    )
    for section in sections(c):
        table = Table(title=section.title, title_justify="left")
        for name in section.header:
            table.add_column(name, overflow="fold")
        for row in section.rows:
            table.add_row(*row)
        console.print(table)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(c: Comparison) -> str:
    """The comparison as markdown tables (a Prefect artifact)."""
    lines = [f"# try: {c.job}", "", describe_sample(c), ""]
    for section in sections(c):
        lines += [f"## {section.title}", ""]
        lines.append("| " + " | ".join(_cell(h) for h in section.header) + " |")
        lines.append("|" + "---|" * len(section.header))
        lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in section.rows]
        lines.append("")
    return "\n".join(lines)
