"""Where ``enrich run`` runs: the flow when a Prefect API is configured, else the engine directly.

A throwaway ephemeral Prefect server costs 10-20 s of start-up per run and its UI is gone when
the run ends, so without a configured API ``enrich run`` runs the engine, says so in one line,
and never imports Prefect; ``--prefect`` forces the flow. The flow path against a configured
server is in ``tests/test_flow.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import JobFactory, review_rows
from typer.testing import CliRunner

from enrich.sim.harness import ThreadedSimulator
from enrich_flows.cli import app
from enrich_flows.prefect_api import configured_api_url, settings_files

URL = "http://127.0.0.1:4200/api"


def no_prefect_env(home: Path) -> dict[str, str]:
    """This environment without any Prefect setting, and a home with no Prefect files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({}, {}, []),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, {}, []),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, {}, []),
        ({"pyproject.toml": f"[tool.prefect.api]\nurl = '{URL}'\n"}, {}, ["pyproject.toml"]),
        ({"prefect.toml": f"[api]\nurl = '{URL}'\n"}, {}, ["prefect.toml"]),
        ({".env": f"PREFECT_API_URL={URL}\n"}, {}, [".env"]),
        ({"home/.prefect/profiles.toml": "active = 'local'\n"}, {}, ["profiles.toml"]),
        ({"p/profiles.toml": ""}, {"PREFECT_HOME": "p"}, ["profiles.toml"]),
        ({"other.toml": ""}, {"PREFECT_PROFILES_PATH": "other.toml"}, ["other.toml"]),
    ],
)
def test_which_files_could_name_a_prefect_api(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], expected: list[str]
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    environ = {k: str(tmp_path / v) for k, v in env.items()}
    found = settings_files(environ, tmp_path, tmp_path / "home")
    assert [p.name for p in found] == expected


def test_an_api_url_in_the_environment_is_enough() -> None:
    assert configured_api_url({"PREFECT_API_URL": URL}, Path("/nonexistent"), Path("/")) == URL


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        (f"active = 'local'\n[profiles.local]\nPREFECT_API_URL = '{URL}'\n", URL),
        ("active = 'mine'\n[profiles.mine]\nPREFECT_HOME = '/tmp/x'\n", "None"),
    ],
)
def test_the_active_profile_decides_when_prefect_is_asked(
    tmp_path: Path, profiles: str, expected: str
) -> None:
    home = tmp_path / "home"
    (home / ".prefect").mkdir(parents=True)
    (home / ".prefect" / "profiles.toml").write_text(profiles)
    code = "from enrich_flows.prefect_api import configured_api_url; print(configured_api_url())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=no_prefect_env(home),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == expected


def test_run_without_a_prefect_api_runs_the_engine_and_says_so(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config = str(make_job(review_rows(12)))
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from enrich_flows.cli import app\n"
        f"result = CliRunner().invoke(app, ['run', {config!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "assert 'prefect' not in sys.modules, 'Prefect was imported'\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**no_prefect_env(home), "CEREBRAS_BASE_URL": sim.base_url}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    text = " ".join(out.stdout.split())
    assert "no Prefect API configured" in text and "running the engine directly" in text
    assert "--prefect" in text
    assert "committed 12 rows" in text
    assert sim.stats.requests == 12


def test_a_sharded_job_without_the_flow_runs_whole_and_says_so(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = make_job(review_rows(40), execution={"rows_per_chunk": 5, "parallelism": 4})
    result = CliRunner().invoke(app, ["run", str(config), "--direct"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "execution.parallelism 4: shards run as Prefect flow runs on workers" in text
    assert "committed 40 rows" in text
    assert sim.stats.requests == 40


def test_direct_and_prefect_exclude_each_other(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    from typer.testing import CliRunner

    from enrich_flows.cli import app

    result = CliRunner().invoke(
        app, ["run", str(make_job(review_rows(3))), "--direct", "--prefect"]
    )
    assert result.exit_code == 2
    assert "--direct" in result.output and "--prefect" in result.output
    assert sim.stats.requests == 0
