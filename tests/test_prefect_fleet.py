"""Workers on other machines: prefect.fleet.yaml clones the repository for every flow run.

The fleet file's deployments are prefect.yaml's (checked entry for entry, so the two cannot
drift); the pull step that imports the clone is tried in a child process; and end to end, a
real Prefect server, a process worker and a bare git repository in a scratch directory: the
flow run's code (engine, tasks and flows) and its job config come from the clone of the
deployed branch, not from the worker's install.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.deployments import run_deployment
from prefect_api import PrefectServer, logs, run_story
from support import ROOT, start_process, stop_process

from enrich.output.reader import read_dataset
from enrich.sim.process import SimProcess

pytest_plugins = ["prefect_harness"]

POOL = "enrich-process"
WORKER_KEY = "csk-fleet-worker-5d0c1e9a7b3f2486"
BRANCH = "fleet-probe"
RUN_TIMEOUT_S = 300
GIT = ["git", "-c", "user.name=Fleet Test", "-c", "user.email=fleet@example.invalid"]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def test_the_fleet_deploys_the_same_deployments_from_a_clone() -> None:
    single, fleet = load("prefect.yaml"), load("prefect.fleet.yaml")
    assert fleet["deployments"] == single["deployments"]
    assert fleet["definitions"] == single["definitions"]
    steps = [next(iter(step)) for step in fleet["pull"]]
    assert steps == ["prefect.deployments.steps.git_clone", "enrich_flows.clone.run_from_clone"]
    assert fleet["pull"][0]["prefect.deployments.steps.git_clone"]["branch"] == (
        "{{ branch.stdout }}"
    )


def test_every_deployment_names_a_flow_that_takes_its_parameters() -> None:
    flows = {}
    for deployment in load("prefect.yaml")["deployments"]:
        module, name = deployment["entrypoint"].split(":")
        found = getattr(importlib.import_module(module), name)
        assert isinstance(found, Flow), deployment["entrypoint"]
        takes = inspect.signature(found.fn).parameters
        assert set(deployment["parameters"]) <= set(takes), deployment["name"]
        flows[deployment["name"]] = found.name
    assert flows == {
        "enrich": "enrich-dataset",
        "reviews-daily": "enrich-incremental",
        "reviews-backfill": "enrich-backfill",
        "try": "enrich-try",
    }


def fake_checkout(root: Path) -> Path:
    """A directory laid out like a checkout, each package saying where it was imported from."""
    for package in ("enrich", "enrich_flows", "enrich_tasks"):
        (root / "src" / package).mkdir(parents=True)
        (root / "src" / package / "__init__.py").write_text(f"WHERE = 'clone {package}'\n")
    return root


PROBE = """
import os, sys
import enrich_flows.clone
from enrich_flows.clone import run_from_clone
print(run_from_clone(sys.argv[1])["directory"], os.getcwd())
import enrich, enrich_flows, enrich_tasks
print(enrich.WHERE, enrich_flows.WHERE, enrich_tasks.WHERE)
"""


def test_the_pull_step_imports_the_project_from_the_clone(tmp_path: Path) -> None:
    clone = fake_checkout(tmp_path / "repo-main")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "repo-main"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    moved, imported = done.stdout.splitlines()
    assert moved == f"{clone} {clone}"
    assert imported == "clone enrich clone enrich_flows clone enrich_tasks"


def test_the_pull_step_refuses_what_is_not_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "other" / "src" / "enrich").mkdir(parents=True)
    (tmp_path / "other" / "src" / "enrich" / "__init__.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "other"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"RuntimeError: {tmp_path / 'other'}: not a checkout of cerebras-enrich "
        "(no src/enrich_flows/__init__.py)"
    )


# -- end to end -------------------------------------------------------------------------------

# Appended to flows/enrich.py in the branch deployed: the run says where its modules came from.
PROBE_MODULE = """

def _fleet_probe() -> None:
    import os

    import enrich as engine
    import enrich_tasks as tasks

    target = os.environ.get("ENRICH_FLEET_PROBE")
    if target:
        with open(target, "w") as out:
            out.write("\\n".join([__file__, engine.__file__, tasks.__file__, os.getcwd()]))


_fleet_probe()
"""


def bare_repository(scratch: Path) -> Path:
    """A bare clone of this repository with a branch whose flows/enrich.py carries the probe."""
    bare = scratch / "cerebras-enrich.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(bare)], check=True)
    work = scratch / "work"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(work)], check=True)
    flow = work / "flows" / "enrich.py"
    flow.write_text(flow.read_text() + PROBE_MODULE)
    subprocess.run([*GIT, "-C", str(work), "checkout", "--quiet", "-b", BRANCH], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "--quiet", "-am", "probe"], check=True)
    subprocess.run([*GIT, "-C", str(work), "push", "--quiet", "origin", BRANCH], check=True)
    return bare


@dataclass
class Fleet:
    server: PrefectServer
    probe: Path
    out: Path


@pytest.fixture(scope="module")
def fleet(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    scratch = tmp_path_factory.mktemp("fleet")
    bare = bare_repository(scratch)
    prefect_server.cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    deploy_env = {"ENRICH_GIT_REPOSITORY": str(bare), "ENRICH_GIT_BRANCH": BRANCH}
    prefect_server.cli(
        "deploy", "--all", "--no-prompt", "--prefect-file", "prefect.fleet.yaml", env=deploy_env
    )
    sim_log = open(scratch / "sim.log", "wb")  # noqa: SIM115 -- closed with the simulator
    sim = SimProcess("--api-keys", WORKER_KEY, "--ttft", "0.01", stderr=sim_log).start()
    probe = scratch / "probe.txt"
    env = {
        **prefect_server.env,
        "CEREBRAS_BASE_URL": sim.base_url,
        "CEREBRAS_API_KEY": WORKER_KEY,
        "ENRICH_FLEET_PROBE": str(probe),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    command += ["--type", "process", "--install-policy", "never", "--name", "fleet-worker"]
    worker_dir = scratch / "worker"
    worker_dir.mkdir()
    with open(scratch / "worker.log", "wb") as log:
        worker = start_process(command, env, log, cwd=worker_dir)
        try:
            yield Fleet(prefect_server, probe, scratch / "out")
        finally:
            stop_process(worker)
            sim.stop()
            sim_log.close()


@pytest.mark.prefect
@pytest.mark.slow
def test_a_flow_run_runs_the_code_and_config_of_its_clone(fleet: Fleet) -> None:
    run = run_deployment(
        "enrich-dataset/enrich",
        parameters={
            "config": "configs/reviews_daily.yaml",  # relative: the clone's, as is its data
            "partition": "2026-11-20",
            "overrides": [f"output.path={fleet.out}"],
        },
        timeout=RUN_TIMEOUT_S,
        poll_interval=1,
        as_subflow=False,
    )
    assert run.state is not None and run.state.is_completed(), run_story(run)
    flows_file, engine_file, tasks_file, cwd = fleet.probe.read_text().splitlines()
    clone = Path(cwd)
    assert clone.name.startswith("cerebras-enrich") and clone != ROOT
    assert flows_file == str(clone / "src" / "enrich_flows" / "enrich.py")
    assert engine_file == str(clone / "src" / "enrich" / "__init__.py")
    assert tasks_file == str(clone / "src" / "enrich_tasks" / "__init__.py")
    data = read_dataset(f"{fleet.out}/dt=2026-11-20")
    assert data.num_rows == 12
    assert {e.message for e in logs(run.id)} >= {
        "Executing deployment step: git_clone",
        "Executing deployment step: run_from_clone",
    }
