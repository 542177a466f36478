"""Identity covers what changes the answer: the endpoint that answers, and the prices for cost.

A result is reused only against the endpoint that produced it (the bundled simulator's answers
never stand in for the real API's, nor the reverse); a price change re-commits the dataset
with costs at the new prices, without asking again.
"""

from __future__ import annotations

import pytest
from support.jobs import JobFactory, review_rows, run_config
from support.simulators import simulator

from enrich.catalogue import Prices
from enrich.engine.fold import priced
from enrich.hashing import endpoint_identity
from enrich.output.reader import output_status, read_dataset, read_manifest
from enrich.results import Result
from enrich.sim.harness import ThreadedSimulator
from enrich.usage import Usage


@pytest.mark.parametrize(
    ("base_url", "identity"),
    [
        ("https://api.cerebras.ai", "https://api.cerebras.ai"),
        ("https://api.cerebras.ai/", "https://api.cerebras.ai"),
        ("HTTPS://API.Cerebras.AI", "https://api.cerebras.ai"),
        ("https://api.cerebras.ai:443", "https://api.cerebras.ai"),
        ("http://127.0.0.1:80/", "http://127.0.0.1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("https://user:secret@proxy.example/v1/", "https://proxy.example/v1"),
        ("https://proxy.example/v1?key=secret#frag", "https://proxy.example/v1"),
        ("  https://proxy.example/Path  ", "https://proxy.example/Path"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
    ],
)
def test_endpoint_identity_normalises(base_url: str, identity: str) -> None:
    assert endpoint_identity(base_url) == identity


@pytest.mark.parametrize(
    ("prompt", "completion", "input_price", "output_price", "cost"),
    [
        (0, 0, 1.0, 1.0, 0.0),
        (1_000_000, 0, 0.35, 0.75, 0.35),
        (0, 1_000_000, 0.35, 0.75, 0.75),
        (200, 100, 2.0, 10.0, 0.0014),
        (200, 100, 0.0, 0.0, 0.0),
    ],
)
def test_cost_is_tokens_at_current_prices(
    prompt: int, completion: int, input_price: float, output_price: float, cost: float
) -> None:
    # A cost recorded earlier is not truth: the row is costed anew at the prices given.
    recorded = Result(
        completion="yes",
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        cost_usd=123.0,
    )
    pricing = Prices(input_per_million=input_price, output_per_million=output_price)
    result = priced(recorded, pricing)
    assert result.cost_usd == pytest.approx(cost)
    assert result.usage == recorded.usage


def test_another_endpoint_asks_again(
    sim: ThreadedSimulator, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_job()
    first = run_config(config)
    assert sim.stats.requests == 20
    first_ids = set(read_dataset(first.job.store.url).column("request_id").to_pylist())

    with simulator(monkeypatch) as other:
        assert other.base_url != sim.base_url
        second = run_config(config)
        assert other.stats.requests == 20
        assert second.summary.reused == 0
        table = read_dataset(second.job.store.url)
    # Every committed answer is one the second endpoint sent: none of the first run's ids.
    assert table.num_rows == 20
    assert set(table.column("status").to_pylist()) == {"ok"}
    ids = set(table.column("request_id").to_pylist())
    assert len(ids) == 20 and not ids & first_ids
    assert sim.stats.requests == 20


def test_same_endpoint_sends_nothing(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    config = make_job()
    run_config(config)
    sim.reset()
    again = run_config(config)
    assert sim.stats.requests == 0
    assert again.job.endpoint == endpoint_identity(sim.base_url)


def test_price_change_recosts_without_asking(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    config = make_job(rows=review_rows(20, duplicates=4))
    first = run_config(config)
    before = read_dataset(first.job.store.url).to_pylist()
    sim.reset()

    again = run_config(config, ["pricing.input_per_million=2", "pricing.output_per_million=10"])
    assert sim.stats.requests == 0
    assert again.summary.requests == 0
    after = read_dataset(again.job.store.url).to_pylist()
    assert again.job.fingerprint != first.job.fingerprint
    assert output_status(again.job.store.url).complete
    token_columns = ("prompt_tokens", "completion_tokens")
    by_id = {r["review_id"]: r for r in before}
    assert len(after) == 20
    for row in after:
        assert [row[c] for c in token_columns] == [
            by_id[row["review_id"]][c] for c in token_columns
        ]
        assert row["cost_usd"] == pytest.approx(
            (row["prompt_tokens"] * 2 + row["completion_tokens"] * 10) / 1_000_000
        )
    total = sum(r["cost_usd"] for r in after)
    assert total > 0 and total != pytest.approx(sum(r["cost_usd"] for r in before))
    assert again.summary.cost_usd == pytest.approx(total)
    assert read_manifest(again.job.store.url).totals.cost_usd == pytest.approx(total)

    sim.reset()
    run_config(config, ["pricing.input_per_million=2", "pricing.output_per_million=10"])
    assert sim.stats.requests == 0
