"""A comparison as one self-contained HTML page with inline SVG charts.

No script, no stylesheet or font from elsewhere: the page opens on a machine without network.
The charts are horizontal bar charts drawn here (:func:`bar_chart`): each typed field's
distribution per variant, cost per row, tokens per row and latency percentiles; the tables
are those of :func:`enrich.trial.report.sections`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from enrich.trial.comparison import Comparison
from enrich.trial.report import describe_sample, ranked_values, sections, usd

__all__ = ["bar_chart", "to_html"]

#: One colour per variant, in order (then repeated).
COLOURS = ("#3b6fb6", "#e07b39", "#4c9a5b", "#b04a7a", "#7a6bb8", "#8c8c3a")
_LABEL_W, _BAR_W, _ROW_H, _BAR_H = 170, 360, 8, 14

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 0.3em; }
.legend span { display: inline-block; margin-right: 1em; }
.swatch { width: 0.8em; height: 0.8em; display: inline-block; margin-right: 0.3em; }
"""


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> str:
    """An SVG of horizontal bars: one group per category, one bar per series in it."""
    peak = max((v for _, values in series for v in values), default=0.0) or 1.0
    group_h = len(series) * _BAR_H + _ROW_H
    height = len(categories) * group_h + _ROW_H
    width = _LABEL_W + _BAR_W + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-size="12">'
    ]
    for c, category in enumerate(categories):
        top = _ROW_H + c * group_h
        middle = top + len(series) * _BAR_H / 2 + 4
        text = category if len(category) <= 26 else category[:25] + "…"
        parts.append(
            f'<text x="{_LABEL_W - 8}" y="{middle:.1f}" text-anchor="end">{escape(text)}</text>'
        )
        for s, (name, values) in enumerate(series):
            value = values[c] if c < len(values) else 0.0
            w = max(0.0, value / peak * _BAR_W)
            y = top + s * _BAR_H
            colour = COLOURS[s % len(COLOURS)]
            parts.append(
                f'<rect x="{_LABEL_W}" y="{y}" width="{w:.1f}" height="{_BAR_H - 2}" '
                f'fill="{colour}"><title>{escape(name)}: {escape(fmt(value))}</title></rect>'
            )
            parts.append(
                f'<text x="{_LABEL_W + w + 4:.1f}" y="{y + _BAR_H - 4}">{escape(fmt(value))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _figure(title: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(title)}</figcaption>{svg}</figure>"


def _legend(labels: Sequence[str]) -> str:
    items = [
        f'<span><i class="swatch" style="background:{COLOURS[i % len(COLOURS)]}"></i>'
        f"{escape(label)}</span>"
        for i, label in enumerate(labels)
    ]
    return f'<p class="legend">{"".join(items)}</p>'


def _charts(c: Comparison) -> list[str]:
    variants = c.variants
    labels = [v.label for v in variants]
    charts = [
        _figure(
            "cost per row",
            bar_chart(
                "cost per row",
                labels,
                [("cost", [v.cost_per_row_usd for v in variants])],
                lambda x: usd(x, 6),
            ),
        ),
        _figure(
            "tokens per row",
            bar_chart(
                "tokens per row",
                ["prompt", "completion", "reasoning"],
                [
                    (
                        v.label,
                        [
                            v.prompt_tokens_per_row,
                            v.completion_tokens_per_row,
                            v.reasoning_tokens_per_row,
                        ],
                    )
                    for v in variants
                ],
                lambda x: f"{x:,.1f}",
            ),
        ),
        _figure(
            "latency (s)",
            bar_chart(
                "latency",
                ["p50", "p95", "p99"],
                [
                    (v.label, [v.latency_s[p] or 0.0 for p in ("p50", "p95", "p99")])
                    for v in variants
                ],
                lambda x: f"{x:.2f} s",
            ),
        ),
    ]
    for name in c.fields:
        values, counted = ranked_values([dict(v.distributions.get(name, [])) for v in variants])
        series = [
            (v.label, [float(d.get(k, 0)) for k in values])
            for v, d in zip(variants, counted, strict=True)
        ]
        charts.append(_figure(name, bar_chart(name, values, series, lambda x: f"{x:.0f}")))
    return charts


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(c: Comparison) -> str:
    """The whole page."""
    title = f"try: {c.job}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1><p>{escape(describe_sample(c))}</p>",
        _legend([v.label for v in c.variants]),
        '<div class="charts">' + "".join(_charts(c)) + "</div>",
    ]
    for section in sections(c):
        parts.append(f"<h2>{escape(section.title)}</h2>")
        parts.append(_table(section.header, section.rows))
    parts.append("</body></html>")
    return "\n".join(parts)
