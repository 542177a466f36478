"""The sample of ``enrich try``: which rows (pure), and that the full run never pays for them.

* the same rows whatever the order of the keys, a larger sample holds a smaller one, and a
  stratified sample takes turns between values;
* only the sampled rows are sent; the full run of the job sends the other rows only, on the
  simulator, and commits every row;
* a variant with another model journals under the same output and its full run, too, sends
  only what its sample did not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import JobFactory, prepare_job, review_rows, run_config

from enrich.errors import ConfigError
from enrich.output.reader import read_dataset
from enrich.sim.harness import ThreadedSimulator
from enrich.trial.sample import pick_rows, read_sample, row_rank
from enrich.trial.session import run_trial

KEYS = [f"r-{i:03d}" for i in range(40)]


def smallest(keys: list[str], n: int) -> list[str]:
    return sorted(keys, key=lambda k: (row_rank(k), k))[:n]


@pytest.mark.parametrize(
    ("keys", "n", "strata", "expected"),
    [
        # the n smallest ranks, returned in position order
        (KEYS, 5, None, sorted(KEYS.index(k) for k in smallest(KEYS, 5))),
        # more than there are: every row
        (KEYS[:3], 10, None, [0, 1, 2]),
        # one row of each stratum before any second: 3 values, 3 rows
        (["a", "b", "c", "d", "e", "f"], 3, ["x", "x", "y", "y", "z", "z"], None),
    ],
)
def test_pick_rows(
    keys: list[str], n: int, strata: list[str] | None, expected: list[int] | None
) -> None:
    picked = pick_rows(keys, n, strata)
    assert len(picked) == min(n, len(keys)) and picked == sorted(picked)
    if expected is not None:
        assert picked == expected
    if strata is not None:
        assert sorted(strata[i] for i in picked) == ["x", "y", "z"]


def test_pick_rows_ignores_order_and_nests() -> None:
    shuffled = KEYS[::-1]
    assert {KEYS[i] for i in pick_rows(KEYS, 7)} == {shuffled[i] for i in pick_rows(shuffled, 7)}
    assert {KEYS[i] for i in pick_rows(KEYS, 7)} < {KEYS[i] for i in pick_rows(KEYS, 12)}


def test_stratified_pick_is_even_and_fills_from_the_larger_strata() -> None:
    strata = ["rare"] * 2 + ["common"] * 38
    picked = pick_rows(KEYS, 10, strata)
    assert sorted(strata[i] for i in picked).count("rare") == 2  # both, then the rest
    assert len(picked) == 10
    even = [str(i % 5) for i in range(40)]
    counts = [sum(even[i] == v for i in pick_rows(KEYS, 10, even)) for v in "01234"]
    assert counts == [2, 2, 2, 2, 2]


def test_read_sample_reads_the_picked_rows(make_job: JobFactory) -> None:
    config = make_job(review_rows(30), execution={"rows_per_chunk": 7})
    job = prepare_job(config)
    sample = read_sample(job, 6, stratify="rating")
    ids = sample.table.column("review_id").to_pylist()
    assert ids == sample.row_ids and len(ids) == 6
    ratings = sample.table.column("rating").to_pylist()
    assert sorted(set(ratings)) == [1, 2, 3, 4, 5]  # every value of the stratum
    with pytest.raises(ConfigError, match="--stratify colour: the input has no such column"):
        read_sample(job, 6, stratify="colour")


def test_the_full_runs_of_two_variants_do_not_send_the_sampled_rows(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config = make_job(review_rows(60))
    variant = tmp_path / "variant.yaml"
    text = config.read_text().replace(str(tmp_path / "out"), str(tmp_path / "out-b"))
    variant.write_text(text.replace("Classify the review.", "Label the review."))
    base, other = prepare_job(config), prepare_job(variant, ["name=variant"])
    sample = read_sample(base, 20)
    first = asyncio.run(run_trial(base, sample))
    assert sim.stats.requests == 20 and first.table.num_rows == 20
    second = asyncio.run(run_trial(other, sample, label="b"))
    assert sim.stats.requests == 40
    # The sample again: everything is reused, nothing sent, the same answers and costs.
    again = asyncio.run(run_trial(base, sample))
    assert sim.stats.requests == 40
    assert again.table.column("completion").equals(first.table.column("completion"))
    assert again.summary.cost_usd == pytest.approx(first.summary.cost_usd)
    assert first.summary.cost_usd > 0

    for path, overrides, trial in ((variant, ["name=variant"], second), (config, [], first)):
        sim.reset()
        ran = run_config(path, overrides)
        assert ran.summary.complete and sim.stats.requests == 40  # 60 rows - 20 sampled
        out = read_dataset(ran.job.store.url)
        assert out.num_rows == 60
        ids, completions = out.column("row_id").to_pylist(), out.column("completion").to_pylist()
        by_id = dict(zip(ids, completions, strict=True))
        answers = trial.table.column("completion").to_pylist()
        assert [by_id[i] for i in sample.row_ids] == answers


def test_a_model_variant_shares_the_output_and_its_full_run_reuses_its_sample(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = make_job(review_rows(30))
    base, other = prepare_job(config), prepare_job(config, ["model=zai-glm-4.7"])
    sample = read_sample(base, 10)
    asyncio.run(run_trial(base, sample))
    trial = asyncio.run(run_trial(other, sample, label="glm"))
    assert sim.stats.requests == 20
    assert trial.table.column("model").to_pylist() == ["zai-glm-4.7"] * 10
    sim.reset()
    ran = run_config(config, ["model=zai-glm-4.7"])
    assert ran.summary.complete and sim.stats.requests == 20  # 30 rows - 10 sampled
