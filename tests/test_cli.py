"""The command line as scripts use it: exit codes, one-line errors before any request, plan.

``python -m enrich.cli`` is the engine's command line (``run --direct``); the ``enrich``
command is :mod:`enrich_flows.cli`, the same commands with ``run`` through the Prefect flow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import JobFactory, review_rows, run_enrich, write_jsonl

from enrich.sim.harness import ThreadedSimulator


def test_importing_the_engine_does_not_import_prefect() -> None:
    code = (
        "import sys, pkgutil, importlib, enrich\n"
        "for m in pkgutil.walk_packages(enrich.__path__, 'enrich.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'prefect' or n.startswith('prefect.'))\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_run_direct_commits_and_exits_zero(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    result = run_enrich(
        "run", str(make_job(review_rows(12))), "--direct", "--set", "execution.max_concurrency=8"
    )
    assert result.returncode == 0, result.stderr
    assert "committed" in result.stderr
    assert sim.stats.requests == 12


def test_run_exits_non_zero_when_the_run_did_not_complete(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(fail_500=1.0)
    result = run_enrich("run", str(make_job(review_rows(5))), "--direct")
    assert result.returncode != 0
    assert "rerun to resume" in result.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"input_path": "/nonexistent/reviews.jsonl"}, "/nonexistent/reviews.jsonl: not found"),
        ({"prompt": {"template": "{missing_column}"}}, "column 'missing_column'"),
        ({"execution": {"max_concurency": 3}}, "execution.max_concurency"),
        ({"params": {"temperature": 7}}, "params.temperature"),
    ],
)
def test_bad_input_is_one_line_before_any_request(
    sim: ThreadedSimulator, make_job: JobFactory, change: dict[str, object], expected: str
) -> None:
    result = run_enrich("run", str(make_job(**change)), "--direct")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert sim.stats.requests == 0


def test_malformed_jsonl_names_file_and_line(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "bad" / "in.jsonl", review_rows(5))
    with path.open("a") as fh:
        fh.write('{"review_id": "r-x", "rating": 3, "text": "oops"\n')
    result = run_enrich("run", str(make_job(input_path=str(path))), "--direct")
    assert result.returncode != 0
    assert f"{path}:6" in result.stderr
    assert sim.stats.requests == 0


def test_the_engine_command_line_runs_only_direct(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    result = run_enrich("run", str(make_job(review_rows(5))))
    assert result.returncode == 2
    assert "--direct" in result.stderr
    assert sim.stats.requests == 0


def test_enrich_run_rejects_bad_input_before_importing_prefect(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = str(make_job(input_path="/nonexistent/reviews.jsonl"))
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from enrich_flows.cli import app\n"
        f"result = CliRunner().invoke(app, ['run', {config!r}])\n"
        "assert result.exit_code == 2, result.output\n"
        "assert '/nonexistent/reviews.jsonl: not found' in result.output, result.output\n"
        "assert 'prefect' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert sim.stats.requests == 0


def test_plan_estimates_before_spending(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    result = run_enrich(
        "plan", str(make_job(review_rows(30))), "--set", "execution.requests_per_minute=10"
    )
    assert result.returncode == 0, result.stderr
    assert "30" in result.stdout and "requests per minute" in result.stdout
    assert sim.stats.requests == 0


def test_plan_shows_the_chunk_size_and_why(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    config = str(make_job(review_rows(30)))
    wide = {"COLUMNS": "200"}  # one table row a line
    automatic = run_enrich("plan", config, "--set", "execution.rows_per_chunk=auto", env=wide)
    assert automatic.returncode == 0, automatic.stderr
    # 16 requests in flight at 0.2 s + 64 tokens at 1,000/s over 3 chunks: 606 rows in 30 s.
    line = next(x for x in automatic.stdout.splitlines() if "rows per chunk" in x)
    assert "500" in line and "automatic" in line and "bound by concurrency" in line
    explicit = run_enrich("plan", config, env=wide)
    line = next(x for x in explicit.stdout.splitlines() if "rows per chunk" in x)
    assert "7" in line and "execution.rows_per_chunk" in line


def test_status_reports_committed_and_pending(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config = make_job(review_rows(14))
    out = str(tmp_path / "out")
    result = run_enrich("status", out)
    assert "no run has started here" in result.stdout
    assert run_enrich("run", str(config), "--direct").returncode == 0
    result = run_enrich("status", out)
    assert result.returncode == 0
    assert "complete" in result.stdout and "2/2 chunks" in result.stdout
