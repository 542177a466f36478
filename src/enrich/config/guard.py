"""Where the API key may be sent: the rules that keep a job's secrets from being aimed elsewhere.

Two decisions, both pure:

- :func:`api_overrides`: which overrides touch the ``api`` section. Run parameters (a flow
  run's ``overrides``, the command line's ``--set``) are chosen by whoever starts a run, which
  need not be whoever may read the key; the endpoint (``api.base_url``), the key's variable
  (``api.api_key_env``) and its Secret block (``api.secret_block``) therefore come from the job
  file or the worker's environment only. :func:`refuse_api_overrides` turns a hit into one
  :class:`~enrich.errors.ConfigError`, before anything is read or sent.
- :func:`insecure_reason`: why a base URL would send the key in clear text. ``https`` is
  required, except to a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``: the bundled
  simulator) or when the job file says ``api.allow_insecure: true``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from enrich.errors import ConfigError

__all__ = ["api_overrides", "insecure_reason", "is_loopback", "refuse_api_overrides"]

API_SECTION = "api"


def _override_keys(overrides: Sequence[str] | Mapping[str, Any]) -> Iterable[str]:
    if isinstance(overrides, Mapping):
        return (str(key) for key in overrides)
    return (item.partition("=")[0] for item in overrides)


def api_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The key paths among ``overrides`` (``KEY.PATH=VALUE`` strings or a mapping) under ``api``.

    The section itself counts (``api={base_url: ...}`` replaces every key in it), and so does
    any spelling the loader would accept for it (surrounding spaces).
    """
    keys = (key.strip() for key in _override_keys(overrides))
    return [key for key in keys if key.split(".", 1)[0].strip() == API_SECTION]


def refuse_api_overrides(overrides: Sequence[str] | Mapping[str, Any], where: str) -> None:
    """Raise a one-line ConfigError when an override touches the ``api`` section.

    Raises:
        ConfigError: ``configs/x.yaml: override api.base_url: refused, ...``.
    """
    refused = api_overrides(overrides)
    if refused:
        raise ConfigError(
            f"{where}: override {refused[0]}: refused, the api section (base_url, api_key_env, "
            "secret_block) comes from the job file or the environment only"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost``, ``127.0.0.0/8`` or ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_reason(url: str, *, allow_insecure: bool = False) -> str | None:
    """Why the API key must not be sent to ``url`` (``None``: it may).

    ``https`` is always fine; ``http`` only to a loopback host or with ``allow_insecure``; any
    other scheme (or none) never.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return "not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return "must be an https:// URL"
    if scheme == "https" or allow_insecure or is_loopback(host):
        return None
    return (
        f"http to {host} would send the API key in clear text: use https, or set "
        "api.allow_insecure: true in the job file"
    )
