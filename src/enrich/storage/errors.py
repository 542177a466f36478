"""Storage failures as one-line StorageErrors, with every credential redacted.

:func:`storage_errors` re-raises any failure inside its block as
:class:`~enrich.errors.StorageError`: one line naming the URL, with the store's reason
(``not found (The specified bucket does not exist)``). :func:`redact_secrets` keeps credentials
out of those messages: no value under a credential-looking name in ``storage_options`` (at any
depth: headers, ``client_kwargs``), no user info embedded in a URL and no credential-looking URL
query parameter (a presigned URL's signature, ``token=``...) ever appears in one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from enrich.errors import StorageError

__all__ = ["error_code", "redact_secrets", "secrets_in", "storage_errors"]

# Names (of options, headers, URL query parameters) whose values are credentials, matched as
# substrings of the lowercased name: ``X-Amz-Signature``, ``sig``, ``Authorization``, ``apikey``...
_SECRET_NAMES = (
    "key",
    "secret",
    "token",
    "password",
    "credential",
    "sas",
    "connection_string",
    "sig",
    "auth",
    "cookie",
)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# A query parameter (after ``?``, ``&`` or ``;``): its name, then its value up to the next one.
_QUERY_PARAM = re.compile(r"(?P<name>(?<=[?&;])[^=&;#?\s]+)=(?P<value>[^&;#\s]*)")
_MIN_SECRET = 4  # shorter values are flags and enum choices; replacing them would garble text


def secrets_in(storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every credential in ``storage_options``, at any depth.

    A string is a credential when any name above it looks like one (``client_kwargs: {headers:
    {Authorization: ...}}``, ``credentials: {...}``), as is the value of a ``(name, value)``
    pair in a list (headers given as pairs). For ``Bearer <token>`` the token alone counts too.
    """
    found: list[str] = []
    _collect(storage_options or {}, secret=False, found=found)
    return found


def _collect(value: Any, *, secret: bool, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for name, item in value.items():
            _collect(item, secret=secret or _is_secret_name(str(name)), found=found)
    elif isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and _is_secret_name(value[0]):
            _collect(value[1], secret=True, found=found)
        else:
            for item in value:
                _collect(item, secret=secret, found=found)
    elif isinstance(value, str) and secret and len(value) >= _MIN_SECRET:
        found.append(value)
        words = value.split()
        if len(words) > 1 and len(words[-1]) >= _MIN_SECRET:  # ``Bearer <token>``
            found.append(words[-1])


def _is_secret_name(name: str) -> bool:
    return any(part in name.lower() for part in _SECRET_NAMES)


def _redact_query_value(match: re.Match[str]) -> str:
    if _is_secret_name(match["name"]) and match["value"]:
        return f"{match['name']}=***"
    return match[0]


def redact_secrets(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` without URL user info, credential query parameters or ``storage_options`` secrets.

    ``https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&x-id=GetObject`` becomes
    ``...?X-Amz-Signature=***&x-id=GetObject``.
    """
    text = _USERINFO.sub("***@", text)
    text = _QUERY_PARAM.sub(_redact_query_value, text)
    for secret in sorted(set(secrets_in(storage_options)), key=len, reverse=True):
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
