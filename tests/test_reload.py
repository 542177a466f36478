"""Live limit changes: what a reload changes, and SIGHUP reaching a running controller."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import eventually

from enrich.config import load_job_config
from enrich.ratelimit import PROVIDER_LIMITS, RateController
from enrich.reload import LIVE_LIMITS, LimitReloader, changes, overridden, reload_on_sighup


def limits(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(LIVE_LIMITS)
    base["max_concurrency"] = 64
    return base | values


@pytest.mark.parametrize(
    ("running", "in_file", "pinned"),
    [
        (limits(), limits(), set()),
        (limits(requests_per_minute=600), limits(), {"requests_per_minute"}),
        (limits(max_concurrency=8), limits(), {"max_concurrency"}),
        (limits(tokens_per_minute=None), limits(tokens_per_minute=1e5), {"tokens_per_minute"}),
    ],
)
def test_overridden_limits_are_those_that_differ_from_the_file(
    running: dict[str, Any], in_file: dict[str, Any], pinned: set[str]
) -> None:
    assert overridden(running, in_file) == pinned


@pytest.mark.parametrize(
    ("current", "pinned", "in_file", "expected"),
    [
        (limits(), frozenset(), limits(), {}),
        (limits(), frozenset(), limits(requests_per_minute=900), {"requests_per_minute": 900}),
        (
            limits(requests_per_minute=600),
            frozenset({"requests_per_minute"}),
            limits(requests_per_minute=900, tokens_per_minute=1e6),
            {"tokens_per_minute": 1e6},
        ),
        (limits(tokens_per_day=5e6), frozenset(), limits(), {"tokens_per_day": None}),
        (limits(), frozenset(), limits(max_concurrency=16), {"max_concurrency": 16}),
    ],
)
def test_a_reload_changes_what_differs_and_is_not_overridden(
    current: dict[str, Any],
    pinned: frozenset[str],
    in_file: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    assert changes(current, pinned, in_file) == expected


def write_config(path: Path, **execution: Any) -> Path:
    config = {
        "input": {"path": "in.jsonl"},
        "prompt": {"template": "{text}"},
        "model": "m",
        "output": {"path": "out"},
        "execution": execution,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def make_controller(**kwargs: Any) -> RateController:
    settings: dict[str, Any] = {
        "max_in_flight": 64,
        "requests_per_minute": None,
        "tokens_per_minute": None,
    }
    return RateController(**(settings | kwargs))


async def test_reload_applies_the_file_and_keeps_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path / "job.yaml", requests_per_minute=600, tokens_per_minute=60_000)
    running = load_job_config(path, ["execution.tokens_per_minute=30000"])
    controller = make_controller(requests_per_minute=600, tokens_per_minute=30_000)
    reloader = LimitReloader(controller, path, running)

    write_config(tmp_path / "job.yaml", requests_per_minute=900, tokens_per_minute=90_000)
    assert reloader.reload() == {"requests_per_minute": 900}
    stats = controller.stats
    assert (stats.effective_rpm, stats.effective_tpm) == (900, 30_000)


@pytest.mark.parametrize("content", ["execution: [", "execution:\n  requests_per_minute: -1\n"])
async def test_a_broken_file_changes_nothing(tmp_path: Path, content: str) -> None:
    path = write_config(tmp_path / "job.yaml", requests_per_minute=600)
    controller = make_controller(requests_per_minute=600)
    reloader = LimitReloader(controller, path, load_job_config(path))
    path.write_text(content)
    assert reloader.reload() == {}
    assert controller.stats.effective_rpm == 600


async def test_sighup_reloads_a_running_controller(tmp_path: Path) -> None:
    path = write_config(tmp_path / "job.yaml", requests_per_minute=600, max_concurrency=4)
    controller = make_controller(requests_per_minute=600, max_in_flight=4)
    with reload_on_sighup(controller, load_job_config(path), str(path)) as reloader:
        assert reloader is not None
        write_config(path, requests_per_minute=1200, max_concurrency=8)
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: controller.stats.effective_rpm == 1200, message="not reloaded")
        assert reloader.limits["max_concurrency"] == 8
    # The handler is gone with the block: the signal is back to its default.
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


async def test_nothing_to_reload_from_without_a_config_file(tmp_path: Path) -> None:
    controller = make_controller()
    config = load_job_config(write_config(tmp_path / "job.yaml"))
    with reload_on_sighup(controller, config, "job") as reloader:
        assert reloader is None


async def test_one_run_holds_sighup_and_keeps_it(tmp_path: Path) -> None:
    first_path = write_config(tmp_path / "first.yaml", requests_per_minute=600)
    second_path = write_config(tmp_path / "second.yaml", requests_per_minute=600)
    first = make_controller(requests_per_minute=600)
    second = make_controller(requests_per_minute=600)
    with reload_on_sighup(first, load_job_config(first_path), str(first_path)) as holder:
        assert holder is not None
        with reload_on_sighup(second, load_job_config(second_path), str(second_path)) as other:
            assert other is None  # the signal already belongs to the first run's reloader
        write_config(first_path, requests_per_minute=1200)
        os.kill(os.getpid(), signal.SIGHUP)  # still handled after the second run ended
        await eventually(lambda: first.stats.effective_rpm == 1200, message="not reloaded")
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_every_provider_limit_reloads() -> None:
    assert set(LIVE_LIMITS) == {"max_concurrency"} | {limit.name for limit in PROVIDER_LIMITS}
