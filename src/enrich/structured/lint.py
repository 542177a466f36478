"""The strict-mode lint: what Cerebras would refuse in an output schema, said before it is sent.

Strict mode (``response_format.json_schema.strict: true``) is constrained decoding over a subset
of JSON Schema. :func:`lint_schema` walks a schema and returns one :class:`Finding` per thing
to change, in document order, each naming its JSON path (``$.properties.address``) and what to
write instead:

* the root is an object with properties (each property becomes a typed column);
* every object lists all its properties in ``required`` and sets ``additionalProperties: false``
  (a property that may be absent stays required and allows ``null`` through ``anyOf``);
* no type arrays (``type: [string, "null"]``): ``anyOf`` instead, with at most 5 branches;
* only the string ``format``\\ s strict mode knows (:data:`SUPPORTED_FORMATS`);
* an array gives its item schema (``items: true`` is not allowed);
* ``$ref`` points into the schema (``#/$defs/...``), and the schema is valid JSON Schema.

Pure: no network, no config. The field-list spelling (:mod:`enrich.structured.fields`) always
passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from enrich.errors import ConfigError

__all__ = [
    "MAX_ANY_OF",
    "SUPPORTED_FORMATS",
    "Finding",
    "OutputSchemaRefused",
    "check_output_schema",
    "lint_schema",
]

#: Most ``anyOf`` branches strict mode accepts.
MAX_ANY_OF = 5
#: String formats strict mode can enforce while decoding.
SUPPORTED_FORMATS = (
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
)
_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing strict mode would refuse: where (a JSON path) and what to change."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class OutputSchemaRefused(ConfigError):
    """An output schema strict mode would refuse: the first finding, and all of them."""

    def __init__(self, where: str, findings: list[Finding]) -> None:
        self.where = where
        self.findings = findings
        more = f" (and {len(findings) - 1} more; `enrich plan` lists them)" if findings[1:] else ""
        super().__init__(f"{where}: {findings[0]}{more}")

    def lines(self) -> list[str]:
        """One line per finding, each naming the file, the key and the JSON path."""
        return [f"{self.where}: {f}" for f in self.findings]


def check_output_schema(schema: Any, where: str) -> None:
    """Refuse, before anything is sent, a schema with strict-mode findings.

    ``where`` names the file and key (``configs/x.yaml: prompt.output_schema``).

    Raises:
        OutputSchemaRefused: the schema has findings.
    """
    findings = lint_schema(schema)
    if findings:
        raise OutputSchemaRefused(where, findings)


def lint_schema(schema: Any) -> list[Finding]:
    """Every strict-mode finding in ``schema``, in document order (empty: it may be sent)."""
    if not isinstance(schema, Mapping):
        return [Finding("$", "an output schema is a mapping (a JSON Schema or a field list)")]
    findings: list[Finding] = []
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
        findings.append(
            Finding(
                "$",
                "the root must be an object with properties (type: object, properties: {...}): "
                "each property becomes a column",
            )
        )
    findings.extend(_walk(schema, "$", schema))
    # The meta-schema repeats some findings above (a type that is no type): one line each.
    said = {f.path for f in findings}
    findings.extend(f for f in _validity(schema) if f.path not in said)
    return findings


def _walk(node: Any, path: str, root: Mapping[str, Any]) -> Iterator[Finding]:
    if not isinstance(node, Mapping):
        if node is not False:  # ``false`` is a schema too (nothing matches); ``true`` is not
            yield Finding(path, f"{_show(node)} is not a schema; write one, e.g. {{type: string}}")
        return
    yield from _type_findings(node, path)
    if node.get("type") == "object" or "properties" in node:
        yield from _object_findings(node, path)
    if node.get("type") == "array":
        items = node.get("items")
        if items is True:
            yield Finding(
                f"{path}.items",
                "items: true is not allowed; give the item schema, e.g. items: {type: string}",
            )
        elif items is None:
            yield Finding(path, "an array needs items: the item schema, e.g. {type: string}")
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and len(any_of) > MAX_ANY_OF:
        yield Finding(
            f"{path}.anyOf",
            f"{len(any_of)} branches; strict mode allows at most {MAX_ANY_OF}: merge some "
            "(one enum for several constants, say)",
        )
    fmt = node.get("format")
    if fmt is not None and fmt not in SUPPORTED_FORMATS:
        yield Finding(
            f"{path}.format",
            f"{_show(fmt)} is not a format strict mode supports "
            f"({', '.join(SUPPORTED_FORMATS)}); drop it or use one of those",
        )
    ref = node.get("$ref")
    if ref is not None and not _resolves(ref, root):
        yield Finding(f"{path}.$ref", f"{_show(ref)} does not point into this schema's $defs")
    yield from _children(node, path, root)


def _type_findings(node: Mapping[str, Any], path: str) -> Iterator[Finding]:
    kind = node.get("type")
    if isinstance(kind, list):
        # Quoted, so the suggestion pasted into YAML stays the string "null", not a null.
        branches = ", ".join(f"{{type: {t if t != 'null' else repr(t)}}}" for t in kind)
        yield Finding(
            f"{path}.type",
            f"{_show(kind)} is a type array, which strict mode refuses; write anyOf: [{branches}]",
        )
    elif kind is not None and kind not in _TYPES:
        yield Finding(
            f"{path}.type", f"{_show(kind)} is not a JSON Schema type ({', '.join(_TYPES)})"
        )


def _object_findings(node: Mapping[str, Any], path: str) -> Iterator[Finding]:
    properties = node.get("properties")
    names = list(properties) if isinstance(properties, Mapping) else []
    if node.get("additionalProperties") is not False:
        yield Finding(path, "set additionalProperties: false (strict mode requires it)")
    required = node.get("required")
    listed = required if isinstance(required, list) else []
    missing = [n for n in names if n not in listed]
    if missing:
        yield Finding(
            f"{path}.required",
            f"add {', '.join(repr(n) for n in missing)}: strict mode requires every property; "
            "one that may be missing stays required and allows null "
            "(anyOf: [{type: string}, {type: 'null'}])",
        )
    unknown = [n for n in listed if n not in names]
    if unknown:
        yield Finding(
            f"{path}.required",
            f"{', '.join(repr(n) for n in unknown)} is not a property; remove it or add it "
            "under properties",
        )


def _children(node: Mapping[str, Any], path: str, root: Mapping[str, Any]) -> Iterator[Finding]:
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            yield from _walk(sub, f"{path}.properties.{name}", root)
    items = node.get("items")
    if isinstance(items, Mapping):
        yield from _walk(items, f"{path}.items", root)
    for keyword in ("anyOf", "prefixItems"):
        branches = node.get(keyword)
        if isinstance(branches, list):
            for i, sub in enumerate(branches):
                yield from _walk(sub, f"{path}.{keyword}[{i}]", root)
    for keyword in ("$defs", "definitions"):
        defs = node.get(keyword)
        if isinstance(defs, Mapping):
            for name, sub in defs.items():
                yield from _walk(sub, f"{path}.{keyword}.{name}", root)


def _resolves(ref: Any, root: Mapping[str, Any]) -> bool:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return False
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return isinstance(node, Mapping)


def _validity(schema: Mapping[str, Any]) -> Iterator[Finding]:
    """What makes ``schema`` not a JSON Schema at all (a keyword with a value of a wrong kind)."""
    for error in Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        yield Finding(f"${where}", f"not valid JSON Schema: {error.message}")


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()
