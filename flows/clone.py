"""The pull step that runs a flow from its git clone: workers on machines that did not deploy.

``prefect.fleet.yaml`` deploys the flows of ``prefect.yaml`` with two pull steps, run by the
flow-run process on the worker before it imports the flow: ``git_clone`` fetches the
repository at the deployed branch into the run's working directory, then
:func:`run_from_clone` makes that clone the code the run imports. The entrypoints are module
paths (``enrich_flows.enrich:enrich_dataset``), so the clone's ``src/`` (where ``enrich``,
``enrich_flows`` and ``enrich_tasks`` live) goes first on ``sys.path``, and every module of
the project the process had imported already (this step's own package, from the worker's
install) is forgotten: engine, tasks and flows then all come from the one commit cloned, never
half from the install. The working directory becomes the clone's root, so a job config named
relatively (``configs/reviews_daily.yaml``) and the inputs it names are the clone's.

The worker's install supplies the dependencies and this step (``pip install
'cerebras-enrich @ git+URL@BRANCH'``, or a wheel for an offline machine); reinstall it when
the dependencies change. Nothing is installed per run: concurrent runs on one worker each have
their own clone and share the environment untouched.

This module imports nothing of the project, so running it pulls nothing more of the install.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

__all__ = ["PACKAGES", "run_from_clone"]

#: The project's import packages, all under ``src/`` of a checkout.
PACKAGES = ("enrich", "enrich_flows", "enrich_tasks")


def run_from_clone(directory: str) -> dict[str, str]:
    """Import the project from the checkout at ``directory`` and work in it.

    ``directory`` is what ``git_clone`` returned (relative to the working directory). Returns
    ``{"directory": <absolute root>}``, which Prefect makes the working directory. Raises
    RuntimeError naming the directory when it is not a checkout of this project.
    """
    root = Path(directory).resolve()
    src = root / "src"
    missing = [p for p in PACKAGES if not (src / p / "__init__.py").is_file()]
    if missing:
        raise RuntimeError(
            f"{root}: not a checkout of cerebras-enrich (no src/{missing[0]}/__init__.py)"
        )
    sys.path.insert(0, str(src))
    for name in [m for m in sys.modules if m.split(".", 1)[0] in PACKAGES]:
        del sys.modules[name]
    importlib.invalidate_caches()
    os.chdir(root)
    return {"directory": str(root)}
