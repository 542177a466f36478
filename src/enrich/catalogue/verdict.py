"""Whether a job may use its model, and at which prices: pure decisions over a catalogue.

:func:`judge_model` refuses a model the provider no longer serves (retired, or absent from a
catalogue fetched live, or not listed for the key) and warns about one marked deprecated or
unknown to an offline catalogue. :func:`job_prices` decides the prices a job costs its rows
at: ``pricing`` in the config wins, key by key, over the catalogue's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from enrich.catalogue.entry import Catalogue, ModelEntry
from enrich.config.schema import PricingSpec

__all__ = ["ModelVerdict", "Prices", "job_prices", "judge_model"]


@dataclass(frozen=True, slots=True)
class ModelVerdict:
    """The model's entry (None: unknown), and a refusal or a warning (one line each)."""

    entry: ModelEntry | None
    refusal: str | None = None
    warning: str | None = None


def _others(catalogue: Catalogue, model: str, today: date) -> str:
    served = [m for m in catalogue.in_service(today) if m != model]
    if catalogue.served is not None:
        served = [m for m in served if m in catalogue.served]
    return f"; models in service: {', '.join(served)}" if served else ""


def judge_model(catalogue: Catalogue, model: str, today: date) -> ModelVerdict:
    """May a job send requests for ``model`` today, according to ``catalogue``?"""
    entry = catalogue.get(model)
    where = catalogue.describe()
    others = _others(catalogue, model, today)
    if entry is not None and entry.status(today) == "retired":
        when = f" on {entry.retires_on}" if entry.retires_on else ""
        refusal = f"{model!r} was retired by the provider{when} ({where}){others}"
        return ModelVerdict(entry, refusal=refusal)
    if entry is None and catalogue.source == "live":
        refusal = f"{model!r} is not served by the provider ({where}){others}"
        return ModelVerdict(None, refusal=refusal)
    if catalogue.served is not None and model not in catalogue.served:
        refusal = (
            f"{model!r} is not among the models this key may use (GET {catalogue.endpoint}"
            f"/v1/models){others}"
        )
        return ModelVerdict(entry, refusal=refusal)
    if entry is None:
        return ModelVerdict(
            None,
            warning=f"{model!r} is not in the catalogue ({where}): its prices, context and "
            "status are unknown",
        )
    if entry.status(today) == "deprecated":
        when = f", retires {entry.retires_on}" if entry.retires_on else ""
        return ModelVerdict(
            entry,
            warning=f"{model!r} is marked deprecated by the provider{when} ({where}){others}",
        )
    return ModelVerdict(entry)


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million prompt (input) and completion (output) tokens, and where they come from.

    ``known`` is False when neither the config nor the catalogue gave a price (costs are 0).
    """

    input_per_million: float
    output_per_million: float
    source: str = "pricing"
    known: bool = True

    def cost_usd(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What ``prompt_tokens`` in and ``completion_tokens`` out cost."""
        return (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1_000_000

    def worst_case_usd(self, prompt_tokens: int, max_completion_tokens: int) -> float:
        """The most one request can cost: its prompt and a completion of the whole budget."""
        return self.cost_usd(prompt_tokens, max_completion_tokens)

    def describe(self) -> str:
        if not self.known:
            return "unknown (set pricing.input_per_million and output_per_million)"
        return (
            f"${self.input_per_million:g} in / ${self.output_per_million:g} out per million "
            f"tokens ({self.source})"
        )


def job_prices(pricing: PricingSpec, entry: ModelEntry | None) -> Prices:
    """The prices rows are costed at: each of ``pricing``'s keys when set, else the entry's.

    A price neither gives is 0; when neither gives any, the prices are not ``known``.
    """
    chosen: list[float] = []
    sources: list[str] = []
    for own, listed in (
        (pricing.input_per_million, entry.input_per_million if entry else None),
        (pricing.output_per_million, entry.output_per_million if entry else None),
    ):
        if own is not None:
            chosen.append(own)
            sources.append("pricing in the config")
        elif listed is not None:
            chosen.append(listed)
            sources.append("catalogue")
        else:
            chosen.append(0)
    source = " and ".join(dict.fromkeys(sources)) or "none"
    return Prices(chosen[0], chosen[1], source, known=bool(sources))
