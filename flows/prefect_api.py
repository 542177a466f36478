"""Is a Prefect API configured? Decided without paying for ``import prefect`` when possible.

``enrich run`` runs the flow against a configured Prefect API (the run then shows in that
server's UI) and the engine directly when there is none: a throwaway ephemeral server costs
10-20 s of start-up and its UI is gone when the run ends.

Prefect reads its settings from the environment, a ``.env`` file, ``prefect.toml`` and
``pyproject.toml`` in the working directory, and the active profile of its profiles file.
Importing Prefect to ask costs about two seconds, more than a small direct run, so the answer
is read cheaply when it is certain: ``PREFECT_API_URL`` in the environment says yes; none of
those files present says no (Prefect's bundled profiles set no API URL). Otherwise, or when
Prefect is already imported (a test's temporary settings, say), Prefect's own settings decide.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

__all__ = ["configured_api_url", "settings_files"]


def settings_files(environ: Mapping[str, str], cwd: Path, home: Path) -> list[Path]:
    """The files from which Prefect could take an API URL, of those that exist.

    ``pyproject.toml`` counts only when it has a ``[tool.prefect]`` table. ``home`` is the
    user's home directory (the default ``PREFECT_HOME`` is ``~/.prefect``).
    """
    prefect_home = Path(environ.get("PREFECT_HOME") or home / ".prefect")
    candidates = [
        cwd / ".env",
        cwd / "prefect.toml",
        Path(environ.get("PREFECT_PROFILES_PATH") or prefect_home / "profiles.toml"),
    ]
    found = [p for p in candidates if p.is_file()]
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file() and _has_prefect_table(pyproject):
        found.append(pyproject)
    return found


def _has_prefect_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # unreadable here: let Prefect judge it
    return "prefect" in data.get("tool", {})


def configured_api_url(
    environ: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
    home: Path | None = None,
) -> str | None:
    """The Prefect API URL this process would use, or None when it would start an ephemeral one."""
    url = environ.get("PREFECT_API_URL")
    if url:
        return url
    if "prefect.settings" not in sys.modules and not settings_files(
        environ, cwd or Path.cwd(), home or Path.home()
    ):
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None
