"""The benchmark harness at tiny sizes: it runs every scenario and reports every figure.

These tests check that the figures exist and are sane, never that a target is met: targets
are measured on a quiet machine with `enrich bench`, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enrich.bench.measure import Sample, window
from enrich.bench.report import as_json, as_markdown, as_table, machine
from enrich.bench.scenarios import Sizes, prefect_overhead, run_scenarios
from enrich.bench.workload import bare_messages, review, write_input

TINY = Sizes(
    concurrency=8,
    latency_s=0.02,
    latency_rows=60,
    latency_rounds=1,
    known_tpm=6000,
    known_warmup_s=1.0,
    known_window_s=2.0,
    unknown_rpm=600,
    unknown_warmup_s=1.0,
    unknown_window_s=2.0,
    cpu_rows=100,
    cpu_rounds=1,
    flow_rows=200,
    flow_rounds=1,
    noisy_rpm=600,
    noisy_warmup_s=1.0,
    noisy_window_s=2.0,
    flow_chunks="auto,50",
)


def samples(*rows: tuple[float, int, int, int, int]) -> list[Sample]:
    return [Sample(*row) for row in rows]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # (t, requests, ok, 429s, tokens); the window is cut at samples, never interpolated.
        (0.0, 10.0, (0.0, 10.0, 30, 20, 10, 2000)),
        (1.0, 10.0, (5.0, 10.0, 10, 10, 0, 1000)),
        (0.0, 9.0, (0.0, 5.0, 20, 10, 10, 1000)),
    ],
)
def test_window_takes_the_samples_inside(
    start: float, end: float, expected: tuple[float, float, int, int, int, int]
) -> None:
    series = samples((0.0, 0, 0, 0, 0), (5.0, 20, 10, 10, 1000), (10.0, 30, 20, 10, 2000))
    w = window(series, start, end)
    assert (w.start, w.end, w.requests, w.ok, w.throttled, w.tokens) == expected


def test_window_rates() -> None:
    w = window(samples((2.0, 0, 0, 0, 0), (12.0, 100, 90, 10, 5000)), 0.0, 20.0)
    assert (w.ok_per_s, w.tokens_per_s, w.throttled_share) == (9.0, 500.0, 0.1)


def test_window_needs_two_samples() -> None:
    with pytest.raises(ValueError):
        window(samples((0.0, 0, 0, 0, 0), (5.0, 1, 1, 0, 10)), 1.0, 4.0)


def test_both_sides_send_the_same_requests(tmp_path: Path) -> None:
    path = write_input(tmp_path / "in.jsonl", 3, offset=5)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [review(5), review(6), review(7)]
    users = [m[1]["content"] for m in bare_messages(3, offset=5)]
    assert users == [f"Rating {r['rating']}: {r['text']}" for r in rows]


@pytest.mark.slow
async def test_every_scenario_reports_its_figures() -> None:
    lines: list[str] = []
    outcomes = await run_scenarios("abcd", TINY, lines.append)
    assert [o.key for o in outcomes] == ["a", "b", "c", "d"]
    a, b, c, d = (o.figures for o in outcomes)
    assert a["pipeline_rows_per_s"] > 0 and a["bare_rows_per_s"] > 0
    assert a["ideal_rows_per_s"] == pytest.approx(8 / 0.02)
    assert len(a["pipeline_runs"]) == len(a["bare_runs"]) == 1
    assert all(run["complete"] and run["rows"] == 60 for run in a["pipeline_runs"])
    for figures in (b, c):
        for side in ("pipeline", "bare"):
            assert figures[side]["share_of_quota"] > 0
            # 429s are some of the requests; those in the window are some of all 429s.
            total = figures[side]["throttled_total"]
            assert figures[side]["throttled_in_window"] <= total <= figures[side]["requests_total"]
    assert "throttled_share_after_warmup" in c["pipeline"]
    assert d["pipeline_cpu_s_per_1000_rows"] > 0 and d["bare_cpu_s_per_1000_rows"] > 0
    # Each verdict is its target applied to the figures reported beside it.
    assert [o.met for o in outcomes] == [
        a["pipeline_vs_bare"] >= 0.9,
        b["pipeline"]["share_of_quota"] >= 0.95 and b["pipeline"]["throttled_total"] == 0,
        c["pipeline"]["share_of_quota"] >= 0.85
        and c["pipeline"]["throttled_share_after_warmup"] <= 0.02,
        d["pipeline_vs_bare"] <= 1.2,
    ]
    assert all(o.reached for o in outcomes)
    assert lines  # progress was logged

    host = machine()
    document = as_json(outcomes, TINY, host)
    assert set(document["scenarios"]) == set("abcd")
    json.dumps(document)  # plain JSON all the way down
    assert as_table(outcomes, host).row_count == 4
    assert as_markdown(outcomes).count("\n") == 5


async def test_the_noisy_server_scenario_runs_alone_and_reports_both_sides() -> None:
    lines: list[str] = []
    (outcome,) = await run_scenarios("f", TINY, lines.append)
    assert outcome.key == "f"
    figures = outcome.figures
    for side in ("pipeline", "bare"):
        f = figures[side]
        assert f["share_of_quota"] > 0
        # The simulator's random 429s and 5xx reached both sides, and were counted.
        assert 0 < f["throttled_total"] <= f["requests_total"]
        assert 0 < f["server_errors_total"] <= f["requests_total"]
        assert f["throttled_in_window"] <= f["throttled_total"]
    assert outcome.setup["random_429_share"] == outcome.setup["random_5xx_share"] == 0.1
    assert outcome.met == (figures["pipeline"]["share_of_quota"] >= 0.72)
    assert any(line.startswith("f pipeline") for line in lines)
    assert as_markdown([outcome]).count("\n") == 2


@pytest.mark.slow
@pytest.mark.prefect
def test_prefect_overhead_runs_the_flow_and_the_engine(tmp_path: Path) -> None:
    outcome = prefect_overhead(TINY, tmp_path, lambda line: None)
    figures = outcome.figures
    assert set(figures["modes"]) == {"cpu", "latency"}
    for mode in figures["modes"].values():
        auto, small = mode["sizes"]["auto"], mode["sizes"]["50"]
        # 8 requests in flight at 0.2 s + 64 tokens at 1,000/s over 4 chunks: 227 rows.
        assert (auto["rows_per_chunk"], auto["chunks"]) == (200, 1)
        assert (small["rows_per_chunk"], small["chunks"]) == (50, 4)
        for entry in (auto, small):
            for kind in ("direct", "flow"):
                run = entry[kind]
                assert run["wall_s"] > 0 and run["client_cpu_s"] > 0
                assert run["server_cpu_s"] >= 0
                assert run["total_cpu_s"] == pytest.approx(
                    run["client_cpu_s"] + run["server_cpu_s"], abs=0.002
                )
            assert len(entry["flow_runs"]) == len(entry["direct_runs"]) == 1
        # The flow's server does work for its task runs; the engine alone sends it nothing.
        assert small["flow"]["server_cpu_s"] > small["direct"]["server_cpu_s"]
    assert outcome.setup["rows"] == 200
    assert outcome.met == all(
        m["sizes"]["auto"]["wall_overhead"] <= 0.03 and m["sizes"]["auto"]["cpu_overhead"] <= 0.1
        for m in figures["modes"].values()
    )
