"""Where a job reads and where it writes must not overlap.

An output location inside the input (``input.path: data/``, ``output.path: data/out``) would
have a run read its own parts, checkpoints and records as input the next time it lists the
input; an input inside the output (``input.path: out/x/parts/*``, ``output.path: out/x``) would
be read from a location whose commits rewrite and garbage-collect files. Both are refused, as
is one location for both, before anything is read.

Pure functions of the two paths as written and the working directory (which relative local
paths resolve against, as in :mod:`enrich.config.schema`): local paths and ``file://`` URLs
are made absolute and normalised, object store URLs compared by scheme (``s3a://`` is
``s3://``), bucket and key. A glob or a ``{date}`` field stands for everything under its fixed
prefix. Symlinks are not followed.
"""

from __future__ import annotations

import posixpath
import re

from enrich.errors import ConfigError

__all__ = ["Place", "overlap_reason", "place_of", "refuse_overlap"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_LOCAL = {"file", "local"}
_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
_PATTERN_CHARS = "*?[{"

Place = tuple[str, str]  # (scheme, normalised path); "" is the local file system


def place_of(path: str, cwd: str) -> Place:
    """``(scheme, path)`` of the fixed part of ``path``: what it names, or a pattern's root."""
    cut = min((path.index(ch) for ch in _PATTERN_CHARS if ch in path), default=None)
    if cut is not None:
        fixed = path[:cut]
        path = fixed[: fixed.rindex("/")] if "/" in fixed else ""
    match = _URL.match(path)
    scheme = match.group(1).lower() if match else ""
    rest = match.group(2) if match else path
    if not match or scheme in _LOCAL:
        return "", posixpath.normpath(posixpath.join(cwd, rest or "."))
    # An object store key: no leading, trailing or doubled slashes.
    return _ALIASES.get(scheme, scheme), posixpath.normpath("/" + rest).lstrip("/")


def _inside(inner: Place, outer: Place) -> bool:
    if inner[0] != outer[0]:
        return False
    if inner[1] == outer[1] or not outer[1]:
        return True
    return inner[1].startswith(outer[1].rstrip("/") + "/")


def overlap_reason(input_path: str, output_path: str, cwd: str) -> str | None:
    """Why a job may not read ``input_path`` and write ``output_path`` (None: it may)."""
    source, target = place_of(input_path, cwd), place_of(output_path, cwd)
    if source == target:
        return (
            f"output.path {output_path} and input.path {input_path} are one location; "
            "write the output elsewhere"
        )
    if _inside(target, source):
        return (
            f"output.path {output_path} is inside input.path {input_path} (a run would read "
            "its own output as input); write the output elsewhere"
        )
    if _inside(source, target):
        return (
            f"input.path {input_path} is inside output.path {output_path} (commits there "
            "replace and delete files); read the input from elsewhere or write the output "
            "elsewhere"
        )
    return None


def refuse_overlap(input_path: str, output_path: str, cwd: str, where: str) -> None:
    """Raise a one-line ConfigError naming ``where`` when the two locations overlap."""
    reason = overlap_reason(input_path, output_path, cwd)
    if reason is not None:
        raise ConfigError(f"{where}: {reason}")
