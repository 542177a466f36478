"""Reading the provider's model lists, leniently.

``GET {base}/public/v1/models`` (no key) answers ``{"object": "list", "data": [model, ...]}``
(a bare list is accepted too). Of each model this reads, and ignores every other field:

==========================  ==========================================================
``id``                      the model id (a model without a string id is skipped)
``pricing.prompt``          USD per prompt token, a decimal string ("0.00000035") or a number
``pricing.completion``      USD per completion token, likewise
``limits.max_context_length``   context window in tokens (also top-level ``context_length``)
``limits.max_completion_tokens`` longest completion (also top-level ``max_output_length``)
``capabilities``            ``structured_outputs`` / ``reasoning``: booleans, when present
``supported_parameters``    a list of names (or an object keyed by them): ``response_format``
                            means structured outputs, ``reasoning_effort`` reasoning, when
                            ``capabilities`` does not say
``preview``                 boolean
``deprecated``              boolean, or the date (``YYYY-MM-DD``) the model is retired
``deprecation_date``        the date the model stops being served (also
                            ``retirement_date``, ``retires_on``, ``sunset_date``)
``retired``                 boolean
==========================  ==========================================================

This is the shape Cerebras documents for its public models endpoint (pricing per token as
strings, as OpenRouter-style catalogues have it). A field that is missing or of another
type is unknown (``None``), never an error: the provider may add, drop or rename fields, and
a catalogue that half-parses is still worth more than none. ``GET {base}/v1/models`` (with the
key) answers OpenAI's list of ``{"id": ...}``: :func:`parse_model_ids` reads the ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from enrich.catalogue.entry import ModelEntry

__all__ = ["parse_model_ids", "parse_models"]

_MILLION = Decimal(1_000_000)
_DATE_KEYS = ("deprecation_date", "retirement_date", "retires_on", "sunset_date")


def _items(body: Any) -> list[Any]:
    if isinstance(body, Mapping):
        body = body.get("data")
    return list(body) if isinstance(body, list) else []


def _per_million(value: Any) -> float | None:
    """USD per token (a string or a number) as USD per million tokens, exactly."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        per_token = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not per_token.is_finite() or per_token < 0:
        return None
    return float(per_token * _MILLION)


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    return None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _supports(item: Mapping[str, Any], capability: str, parameter: str) -> bool | None:
    said = _flag(_mapping(item.get("capabilities")).get(capability))
    if said is not None:
        return said
    params = item.get("supported_parameters")
    if isinstance(params, list | Mapping) and params:
        return parameter in params
    return None


def parse_model(item: Any) -> ModelEntry | None:
    """One model of the public list, or ``None`` when it has no id."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    pricing = _mapping(item.get("pricing"))
    limits = _mapping(item.get("limits"))
    deprecated = item.get("deprecated")
    retires_on = _date(deprecated)
    for key in _DATE_KEYS:
        retires_on = retires_on or _date(item.get(key))
    return ModelEntry(
        id=item["id"],
        input_per_million=_per_million(pricing.get("prompt")),
        output_per_million=_per_million(pricing.get("completion")),
        context_length=_count(limits.get("max_context_length"))
        or _count(item.get("context_length")),
        max_completion_tokens=_count(limits.get("max_completion_tokens"))
        or _count(item.get("max_output_length")),
        structured_outputs=_supports(item, "structured_outputs", "response_format"),
        reasoning=_supports(item, "reasoning", "reasoning_effort"),
        preview=_flag(item.get("preview")) or False,
        deprecated=deprecated is True or retires_on is not None,
        retired=_flag(item.get("retired")) or False,
        retires_on=retires_on,
    )


def parse_models(body: Any) -> dict[str, ModelEntry]:
    """Every model of a public models body, by id (the first of a repeated id wins)."""
    models: dict[str, ModelEntry] = {}
    for item in _items(body):
        entry = parse_model(item)
        if entry is not None and entry.id not in models:
            models[entry.id] = entry
    return models


def parse_model_ids(body: Any) -> frozenset[str]:
    """The ids of an OpenAI-style model list (``GET /v1/models``)."""
    ids = (_mapping(item).get("id") for item in _items(body))
    return frozenset(i for i in ids if isinstance(i, str) and i)
