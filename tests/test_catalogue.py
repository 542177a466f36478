"""The model catalogue: parsing the provider's lists, statuses, verdicts, prices (pure, table-
first), and where a catalogue comes from (the provider, the cache, the snapshot) with time, the
network and the cache folder injected, then online against the simulator and offline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import free_port

from enrich.catalogue import (
    OFFLINE_ENV,
    Catalogue,
    CatalogueCache,
    CatalogueUnreachable,
    ModelEntry,
    job_prices,
    judge_model,
    load_catalogue,
    parse_model_ids,
    parse_models,
)
from enrich.catalogue.resolve import UNREACHABLE_FOR
from enrich.config.schema import ApiSpec, PricingSpec
from enrich.sim.config import SimConfig
from enrich.sim.harness import ThreadedSimulator

TODAY = date(2026, 12, 2)
GPT = {
    "id": "gpt-oss-120b",
    "pricing": {"prompt": "0.00000035", "completion": "0.00000075"},
    "limits": {"max_context_length": 131072, "max_completion_tokens": 40960},
    "capabilities": {"structured_outputs": True, "reasoning": True},
    "deprecated": False,
    "preview": False,
    "quantization": "FP16/8",  # unknown fields are ignored
}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            GPT,
            ModelEntry("gpt-oss-120b", 0.35, 0.75, 131072, 40960, True, True),
        ),
        # Prices as numbers; OpenRouter-style top-level limits.
        (
            {"id": "m", "pricing": {"prompt": 1e-6, "completion": 2e-6}, "context_length": 8192},
            ModelEntry("m", 1.0, 2.0, 8192),
        ),
        # Missing or mistyped fields are unknown, never an error.
        (
            {"id": "m", "pricing": {"prompt": "free", "completion": None}, "limits": "big"},
            ModelEntry("m"),
        ),
        (
            {"id": "m", "limits": {"max_context_length": True, "max_completion_tokens": -5}},
            ModelEntry("m"),
        ),
        # Capabilities from supported_parameters when capabilities says nothing.
        (
            {"id": "m", "supported_parameters": ["response_format", "temperature"]},
            ModelEntry("m", structured_outputs=True, reasoning=False),
        ),
        (
            {"id": "m", "supported_parameters": {"reasoning_effort": {}}},
            ModelEntry("m", structured_outputs=False, reasoning=True),
        ),
        # Deprecation: a flag, a date, or the flag as a date.
        (
            {"id": "m", "deprecated": True, "deprecation_date": "2026-05-27"},
            ModelEntry("m", deprecated=True, retires_on=date(2026, 5, 27)),
        ),
        (
            {"id": "m", "deprecated": "2027-01-15"},
            ModelEntry("m", deprecated=True, retires_on=date(2027, 1, 15)),
        ),
        (
            {"id": "m", "retirement_date": "2027-01-15T00:00:00Z"},
            ModelEntry("m", deprecated=True, retires_on=date(2027, 1, 15)),
        ),
        ({"id": "m", "deprecated": True}, ModelEntry("m", deprecated=True)),
        (
            {"id": "m", "retired": True, "preview": True},
            ModelEntry("m", preview=True, retired=True),
        ),
    ],
)
def test_a_public_model_is_read_leniently(item: dict[str, Any], expected: ModelEntry) -> None:
    assert parse_models({"object": "list", "data": [item]}) == {expected.id: expected}


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ({"data": [GPT, {"name": "no id"}, {"id": 7}, "junk", {"id": ""}]}, ["gpt-oss-120b"]),
        ([GPT], ["gpt-oss-120b"]),  # a bare list
        ({"data": [{"id": "a"}, {"id": "a", "pricing": {"prompt": "1"}}]}, ["a"]),
        ({"error": "nope"}, []),
        (None, []),
    ],
)
def test_a_models_body_gives_each_model_once(body: Any, ids: list[str]) -> None:
    assert list(parse_models(body)) == ids
    assert parse_model_ids(body) == frozenset(ids)


@pytest.mark.parametrize(
    ("entry", "status", "described"),
    [
        (ModelEntry("m"), "active", "active"),
        (ModelEntry("m", preview=True), "preview", "preview"),
        (ModelEntry("m", deprecated=True), "deprecated", "deprecated"),
        (
            ModelEntry("m", deprecated=True, retires_on=date(2027, 1, 15)),
            "deprecated",
            "deprecated (retires 2027-01-15)",
        ),
        (ModelEntry("m", retires_on=TODAY), "retired", f"retired {TODAY}"),
        (
            ModelEntry("m", deprecated=True, retires_on=date(2026, 5, 27)),
            "retired",
            "retired 2026-05-27",
        ),
        (ModelEntry("m", retired=True), "retired", "retired"),
    ],
)
def test_status_follows_the_date(entry: ModelEntry, status: str, described: str) -> None:
    assert entry.status(TODAY) == status
    assert entry.describe_status(TODAY) == described


MODELS = {
    "gpt-oss-120b": ModelEntry("gpt-oss-120b", 0.35, 0.75, 131072, 40960),
    "old": ModelEntry("old", deprecated=True, retires_on=date(2026, 5, 27)),
    "going": ModelEntry("going", deprecated=True, retires_on=date(2027, 1, 15)),
}
AS_OF = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def catalogue(source: str, served: frozenset[str] | None = None) -> Catalogue:
    return Catalogue("https://api.cerebras.ai", source, AS_OF, MODELS, served)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "served", "model", "refusal", "warning"),
    [
        ("live", None, "gpt-oss-120b", None, None),
        ("live", None, "old", "'old' was retired by the provider on 2026-05-27", None),
        ("snapshot", None, "old", "'old' was retired by the provider on 2026-05-27", None),
        (
            "live",
            None,
            "going",
            None,
            "'going' is marked deprecated by the provider, retires 2027-01-15",
        ),
        ("live", None, "nope", "'nope' is not served by the provider (live from https", None),
        ("cache", None, "nope", None, "'nope' is not in the catalogue (cache of"),
        ("snapshot", None, "nope", None, "'nope' is not in the catalogue (snapshot shipped"),
        (
            "live",
            frozenset({"going"}),
            "gpt-oss-120b",
            "not among the models this key may use",
            None,
        ),
        ("snapshot", frozenset({"gpt-oss-120b"}), "gpt-oss-120b", None, None),
    ],
)
def test_which_models_a_job_may_use(
    source: str, served: frozenset[str] | None, model: str, refusal: str | None, warning: str | None
) -> None:
    verdict = judge_model(catalogue(source, served), model, TODAY)
    for said, expected in ((verdict.refusal, refusal), (verdict.warning, warning)):
        assert (said is None) == (expected is None), said
        assert expected is None or expected in str(said)
    if refusal is not None:
        # A refusal names what is still in service.
        assert "models in service: " in str(verdict.refusal)


@pytest.mark.parametrize(
    ("pricing", "entry", "expected"),
    [
        ({}, MODELS["gpt-oss-120b"], (0.35, 0.75, "catalogue", True)),
        (
            {"input_per_million": 1, "output_per_million": 2},
            MODELS["gpt-oss-120b"],
            (1, 2, "pricing in the config", True),
        ),
        (
            {"input_per_million": 0},
            MODELS["gpt-oss-120b"],
            (0, 0.75, "pricing in the config and catalogue", True),
        ),
        ({"output_per_million": 3}, None, (0, 3, "pricing in the config", True)),
        ({}, None, (0, 0, "none", False)),
        ({}, ModelEntry("m"), (0, 0, "none", False)),
    ],
)
def test_pricing_in_the_config_overrides_the_catalogue(
    pricing: dict[str, float], entry: ModelEntry | None, expected: tuple[float, float, str, bool]
) -> None:
    prices = job_prices(PricingSpec(**pricing), entry)
    assert (
        prices.input_per_million,
        prices.output_per_million,
        prices.source,
        prices.known,
    ) == expected


def test_prices_give_the_worst_case_of_a_request() -> None:
    prices = job_prices(PricingSpec(), MODELS["gpt-oss-120b"])
    assert prices.cost_usd(1_000_000, 2_000_000) == pytest.approx(0.35 + 1.5)
    assert prices.worst_case_usd(1000, 256) == pytest.approx((1000 * 0.35 + 256 * 0.75) / 1e6)


class Provider:
    """A fake network: the bodies it answers by path (None: unreachable), and what it was asked."""

    def __init__(self, public: Any = None, served: Any = None) -> None:
        self.answers = {"/public/v1/models": public, "/v1/models": served}
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, url: str, key: str | None) -> Any:
        self.asked.append((url, key))
        for path, body in self.answers.items():
            if url.endswith(path) and not (
                path == "/v1/models" and url.endswith("/public/v1/models")
            ):
                if body is None:
                    raise CatalogueUnreachable(f"GET {url}: connection refused")
                return body
        raise AssertionError(url)


class Clock:
    def __init__(self) -> None:
        self.now = AS_OF

    def __call__(self) -> datetime:
        return self.now


API = ApiSpec(base_url="https://api.cerebras.ai")
PUBLIC = {"data": [GPT]}


def load(provider: Provider, clock: Clock, folder: Path, **options: Any) -> Catalogue:
    environ = options.pop("environ", {})
    return load_catalogue(
        API, environ, now=clock, fetch=provider, cache=CatalogueCache(folder), **options
    )


def test_the_cache_is_reused_for_a_day_then_fetched_again(tmp_path: Path) -> None:
    provider, clock = Provider(public=PUBLIC), Clock()
    first = load(provider, clock, tmp_path)
    assert (first.source, first.as_of, len(provider.asked)) == ("live", AS_OF, 1)

    clock.now = AS_OF + timedelta(hours=23)
    again = load(provider, clock, tmp_path)
    assert (again.source, again.as_of, again.stale) == ("cache", AS_OF, False)
    assert len(provider.asked) == 1  # nothing asked
    assert again.models == first.models

    # A model the fresh cache does not list is asked of the provider before being refused.
    load(provider, clock, tmp_path, want="new-model")
    assert len(provider.asked) == 2

    clock.now = AS_OF + timedelta(hours=23 + 25)
    expired = load(provider, clock, tmp_path)
    assert (expired.source, expired.as_of, len(provider.asked)) == ("live", clock.now, 3)


def test_an_expired_cache_is_used_while_the_provider_is_unreachable(tmp_path: Path) -> None:
    clock = Clock()
    load(Provider(public=PUBLIC), clock, tmp_path)
    clock.now = AS_OF + timedelta(days=3)
    offline = load(Provider(public=None), clock, tmp_path)
    assert (offline.source, offline.stale, offline.as_of) == ("cache", True, AS_OF)
    assert "connection refused" in str(offline.unreachable)
    assert offline.describe().startswith("stale cache of https://api.cerebras.ai fetched at")


def test_with_no_cache_the_snapshot_stands_in(tmp_path: Path) -> None:
    offline = load(Provider(public=None), Clock(), tmp_path)
    assert offline.source == "snapshot"
    assert offline.as_of.date() == date(2026, 12, 1)
    assert offline.describe().startswith("snapshot shipped with enrich, as of 2026-12-01 (offline:")
    assert not any(tmp_path.iterdir())  # nothing cached from a failure


def test_an_unreachable_provider_is_not_asked_again_for_a_while(tmp_path: Path) -> None:
    # A schedule judging thirty partitions would otherwise wait out thirty timeouts.
    provider, clock = Provider(public=None), Clock()
    assert load(provider, clock, tmp_path).source == "snapshot"
    clock.now = AS_OF + timedelta(minutes=5)
    again = load(provider, clock, tmp_path)
    assert again.source == "snapshot" and "connection refused" in str(again.unreachable)
    assert len(provider.asked) == 1
    clock.now = AS_OF + UNREACHABLE_FOR
    load(provider, clock, tmp_path)
    assert len(provider.asked) == 2


def test_offline_mode_never_asks_the_provider(tmp_path: Path) -> None:
    provider = Provider(public=PUBLIC, served={"data": [{"id": "gpt-oss-120b"}]})
    result = load(provider, Clock(), tmp_path, environ={OFFLINE_ENV: "1", "CEREBRAS_API_KEY": "k"})
    assert result.source == "snapshot" and provider.asked == []
    assert f"${OFFLINE_ENV} is set" in str(result.unreachable)


def test_the_key_goes_only_to_the_keyed_list(tmp_path: Path) -> None:
    provider = Provider(public=PUBLIC, served={"data": [{"id": "gpt-oss-120b"}]})
    result = load(provider, Clock(), tmp_path, environ={"CEREBRAS_API_KEY": "csk-k"})
    assert sorted(provider.asked) == [
        ("https://api.cerebras.ai/public/v1/models", None),
        ("https://api.cerebras.ai/v1/models", "csk-k"),
    ]
    assert result.served == frozenset({"gpt-oss-120b"})
    assert "csk-k" not in (tmp_path / next(iter(p.name for p in tmp_path.iterdir()))).read_text()


def test_the_snapshot_has_the_published_figures() -> None:
    offline = load_catalogue(ApiSpec(base_url=f"http://127.0.0.1:{free_port()}"), {})
    assert offline.source == "snapshot"
    gpt = offline.models["gpt-oss-120b"]
    assert (gpt.input_per_million, gpt.output_per_million) == (0.35, 0.75)
    assert (gpt.context_length, gpt.max_completion_tokens) == (131072, 40960)
    assert gpt.status(TODAY) == "active" and gpt.structured_outputs and gpt.reasoning
    retired = {m: e.retires_on for m, e in offline.models.items() if e.status(TODAY) == "retired"}
    assert retired == {
        "llama3.1-8b": date(2026, 5, 27),
        "qwen-3-235b-a22b-instruct-2507": date(2026, 5, 27),
        "qwen-3-32b": date(2026, 2, 16),
        "llama-3.3-70b": date(2026, 2, 16),
    }


def test_online_from_the_simulator(tmp_path: Path) -> None:
    config = SimConfig(
        context_length=65536,
        deprecated={"zai-glm-4.7": "2027-01-15"},
        retired={"llama3.1-8b": "2026-05-27"},
    )
    with ThreadedSimulator(config) as sim:
        environ = {"CEREBRAS_API_KEY": "k"}
        live = load_catalogue(
            ApiSpec(base_url=sim.base_url), environ, cache=CatalogueCache(tmp_path)
        )
    assert live.source == "live" and live.endpoint == sim.base_url.rstrip("/")
    gpt = live.models["gpt-oss-120b"]
    assert (gpt.input_per_million, gpt.output_per_million) == (0.35, 0.75)
    assert (gpt.context_length, gpt.max_completion_tokens) == (65536, 40960)
    assert (gpt.structured_outputs, gpt.reasoning) == (True, True)
    statuses = {m: e.describe_status(TODAY) for m, e in live.models.items()}
    assert statuses == {
        "gpt-oss-120b": "active",
        "zai-glm-4.7": "deprecated (retires 2027-01-15)",
        "llama3.1-8b": "retired 2026-05-27",
    }
    assert live.served == frozenset({"gpt-oss-120b", "zai-glm-4.7"})
    assert judge_model(live, "llama3.1-8b", TODAY).refusal is not None
