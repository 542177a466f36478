"""The public API: what ``enrich`` exports, and that importing it loads nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import enrich


def test_every_exported_name_resolves_to_itself() -> None:
    assert sorted(enrich.__all__) == sorted(enrich._PUBLIC)
    for name in enrich.__all__:
        assert getattr(enrich, name).__name__ == name


def test_importing_the_simulator_does_not_load_the_engine() -> None:
    probe = (
        "import sys, enrich.sim.config; "
        "print('enrich.run' in sys.modules, 'pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
