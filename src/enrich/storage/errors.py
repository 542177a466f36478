"""Storage failures as one-line StorageErrors, with every credential redacted.

:func:`storage_errors` re-raises any failure inside its block as
:class:`~enrich.errors.StorageError`: one line naming the URL, with the store's reason
(``not found (The specified bucket does not exist)``). :func:`redact_secrets` keeps credentials
out of those messages: no value of a credential-looking ``storage_options`` entry, nor user info
embedded in a URL, ever appears in one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from enrich.errors import StorageError

__all__ = ["error_code", "redact_secrets", "secrets_in", "storage_errors"]

# Option names whose values are credentials, matched as substrings of the lowercased name.
_SECRET_NAMES = ("key", "secret", "token", "password", "credential", "sas", "connection_string")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def secrets_in(storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every credential-looking string value in ``storage_options`` (nested mappings too)."""
    found: list[str] = []
    for name, value in (storage_options or {}).items():
        if isinstance(value, Mapping):
            found += secrets_in(value)
        elif isinstance(value, str) and len(value) >= 4 and _is_secret_name(str(name)):
            found.append(value)
    return found


def _is_secret_name(name: str) -> bool:
    return any(part in name.lower() for part in _SECRET_NAMES)


def redact_secrets(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` without URL user info or any credential from ``storage_options``."""
    text = _USERINFO.sub("***@", text)
    for secret in sorted(secrets_in(storage_options), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs exception (``NoSuchBucket``...), when there is one."""
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _describe(exc: BaseException) -> str:
    """A one-line reason for a storage failure, without the URL (the caller adds it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FileNotFoundError):
        detail = text if text and not text.startswith(("/", "[Errno")) else ""
        return f"not found ({detail})" if detail else "not found"
    if isinstance(exc, PermissionError):
        return f"access denied ({text})" if text else "access denied"
    code = error_code(exc)
    name = f"{type(exc).__name__}" + (f" {code}" if code else "")
    return f"{name}: {text}" if text else name


@contextlib.contextmanager
def storage_errors(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Turn any storage failure inside the block into a StorageError naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        message = redact_secrets(f"{url}: {_describe(exc)}", storage_options)
        raise StorageError(message) from exc
