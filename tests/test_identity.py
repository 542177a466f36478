"""Identity covers what changes the answer: the endpoint that answers, and the prices for cost.

A result is reused only against the endpoint that produced it (the bundled simulator's answers
never stand in for the real API's, nor the reverse); a price change re-commits the dataset
with costs at the new prices, without asking again.
"""

from __future__ import annotations

import pytest
from support.jobs import JobFactory, run_config
from support.simulators import simulator

from enrich.hashing import endpoint_identity
from enrich.output.reader import read_dataset
from enrich.sim.harness import ThreadedSimulator


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
