"""Prompt templates: rows of columnar data -> chat messages.

The user message is a Python format-style template: ``{column}`` inserts a column's value and
``{{`` / ``}}`` are literal braces. Only bare column names are fields: attribute access
(``{a.b}``), indexing (``{a[0]}``), conversions (``{a!r}``), format specs (``{a:>5}``) and
positional fields (``{}``) are rejected when the template is compiled, so a template either
renders every row the same way or fails before any request is sent.

A value renders as ``str(value)``; ``None`` (a null cell) renders as the empty string; a nested
value (a struct, list or map column) renders as compact JSON, the text a JSONL input holds for it,
so the same rows render the same prompt from Parquet or JSONL.

The system message is static text. It follows the same brace syntax (``{{`` is a literal
``{``) but may not contain fields: row data belongs in the user message, and a static system
message is identical across rows, which keeps request hashing and provider-side prompt caching
simple.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from string import Formatter
from typing import Any

import orjson

from enrich.errors import ConfigError

__all__ = ["PromptTemplate"]

_STEP_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


def _parse(
    text: str, key: str, where: str, *, step_fields: bool = False
) -> tuple[list[str], list[str]]:
    """Split ``text`` into literal parts and field names: ``lit0 f0 lit1 f1 ... litN``.

    With ``step_fields``, ``{step.field}`` (an earlier step's field) is a field too.
    """
    prefix = f"{where}: {key}" if where else key
    literals: list[str] = []
    fields: list[str] = []
    pending = ""
    try:
        parsed = list(Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{prefix}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, field, spec, conversion in parsed:
        pending += literal
        if field is None:
            continue
        shown = (
            "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        )
        shown += "}"
        if not field.strip():
            problem = "positional fields are not supported; name a column"
        elif step_fields and _STEP_FIELD.match(field):
            literals.append(pending)
            fields.append(field)
            pending = ""
            continue
        elif "." in field or "[" in field:
            problem = "only bare column names are supported (no attribute access or indexing)"
        elif conversion:
            problem = "conversions (!r, !s, !a) are not supported"
        elif spec:
            problem = "format specs are not supported"
        else:
            literals.append(pending)
            fields.append(field)
            pending = ""
            continue
        raise ConfigError(f"{prefix}: field {shown}: {problem}")
    literals.append(pending)
    return literals, fields


def _as_text(values: Sequence[Any], n: int) -> list[str]:
    """The first ``n`` values of a column as text (``None`` -> ``""``, nested -> JSON)."""
    return [v if type(v) is str else _text(v) for v in values[:n]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        # As the JSONL reader writes a nested value (compact, keys in order); values JSON has
        # no type for (bytes, decimals, times in a struct) as their str().
        return orjson.dumps(value, default=str).decode()
    return str(value)


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A compiled prompt: a static system message and a user-message template.

    Build it with :meth:`compile`. ``columns`` is the set of input columns the template reads;
    ``step_fields`` the ``(step, field)`` pairs of earlier steps it reads (``{triage.label}``,
    allowed when compiled with ``step_fields=True``), which :meth:`render_users` takes under
    their dotted names.
    """

    system: str | None
    literals: tuple[str, ...]
    fields: tuple[str, ...]
    columns: frozenset[str]
    step_fields: tuple[tuple[str, str], ...]
    # The template as a printf-style pattern with one %s per field; ``%`` with a tuple is the
    # fastest way to splice strings in pure Python (about 0.3 us a row for two fields).
    _pattern: str

    @classmethod
    def compile(
        cls,
        system: str | None,
        user: str,
        *,
        where: str = "",
        key: str = "prompt",
        step_fields: bool = False,
    ) -> PromptTemplate:
        """Parse the system message and user template.

        Raises ConfigError naming ``prompt.template`` (or ``prompt.system``) and the offending
        field; ``where`` (a config file name) prefixes the message.
        """
        literals, fields = _parse(user, f"{key}.template", where, step_fields=step_fields)
        static = None
        if system is not None:
            sys_literals, sys_fields = _parse(system, f"{key}.system", where)
            if sys_fields:
                prefix = f"{where}: {key}.system" if where else f"{key}.system"
                raise ConfigError(
                    f"{prefix}: field {{{sys_fields[0]}}}: the system message is static text; "
                    f"put row data in {key}.template (write {{{{ and }}}} for literal braces)"
                )
            static = sys_literals[0]
        pattern = "%s".join(part.replace("%", "%%") for part in literals)
        columns = frozenset(f for f in fields if "." not in f)
        refs: dict[tuple[str, str], None] = {}
        for f in fields:
            step, dot, name = f.partition(".")
            if dot:
                refs[(step, name)] = None
        return cls(static, tuple(literals), tuple(fields), columns, tuple(refs), pattern)

    def check(self, available: Iterable[str], where: str, key: str = "prompt") -> None:
        """Raise ConfigError if the template reads a column that is not in ``available``."""
        have = list(available)
        present = set(have)
        for field in self.fields:
            if field not in present and field in self.columns:
                raise ConfigError(
                    f"{where}: {key}.template uses column {field!r} that the input does not "
                    f"have (has: {', '.join(have)})"
                )

    def render_users(self, columns: Mapping[str, Sequence[Any]], n: int) -> list[str]:
        """The user message of each of the first ``n`` rows of columnar data.

        ``columns`` maps column name -> values (a list, or any sequence that slices); it must
        hold every column in :attr:`columns`, each with at least ``n`` values.
        """
        if not self.fields:
            return [self.literals[0]] * n
        text = {name: _as_text(columns[name], n) for name in set(self.fields)}
        if len(self.fields) == 1 and self._pattern == "%s":
            return text[self.fields[0]]
        pattern = self._pattern
        return [pattern % row for row in zip(*(text[f] for f in self.fields), strict=True)]

    def render_user(self, row: Mapping[str, Any]) -> str:
        """The user message for one row (a mapping of column -> value)."""
        return self.render_users({f: [row[f]] for f in self.columns}, 1)[0]

    def messages(self, user: str) -> list[dict[str, str]]:
        """The chat messages for one rendered user message, system message first if any."""
        if self.system is None:
            return [{"role": "user", "content": user}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
