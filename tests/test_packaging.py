"""What a new user installs and copies: the install resolves, and no shipped file suggests a
model the provider has retired."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support import ROOT

# Retired by Cerebras (cerebras-api.md, section 10): a job naming one fails at its first request.
RETIRED = ("llama3.1-8b", "qwen-3-235b-a22b-instruct-2507", "qwen-3-32b", "llama-3.3-70b")


def shipped_text_files() -> list[Path]:
    """What a user reads or copies: the README, the configs, the deployments and the docs."""
    files = [ROOT / "README.md", ROOT / "prefect.yaml", ROOT / "prefect.fleet.yaml"]
    files += sorted((ROOT / "configs").glob("*.yaml"))
    files += sorted((ROOT / "docs").glob("*.md"))
    return files


@pytest.mark.parametrize("path", shipped_text_files(), ids=lambda p: p.name)
def test_no_shipped_file_suggests_a_retired_model(path: Path) -> None:
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        for model in RETIRED:
            if model not in line:
                continue
            # Configs never name one; prose may, to say it is retired (the catalogue, a
            # refusal shown with its error): "retired" within two lines.
            assert path.suffix == ".md", f"{path.name}:{number}: {line}"
            near = " ".join(lines[max(0, number - 3) : number + 2]).lower()
            assert "retired" in near, f"{path.name}:{number}: {line}"


@pytest.mark.slow
def test_an_install_without_the_constraints_file_resolves(tmp_path: Path) -> None:
    # `pip install -e '.[dev]'` on its own, as a user without .ci/constraints.txt runs it:
    # today's releases must resolve, and boto3 (beside s3fs's aiobotocore) within its range.
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    result = subprocess.run(
        [*pip, "--report", str(report), "-e", f"{ROOT}[dev]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        wanted = Requirement(line)
        if wanted.marker is not None and not wanted.marker.evaluate():
            continue
        name = wanted.name.lower().replace("_", "-")
        version = resolved.get(name) or resolved.get(name.replace("-", "_"))
        assert version is not None, f"{wanted.name} was not resolved"
        assert wanted.specifier.contains(version, prereleases=True), (wanted, version)
