"""Loading a job config: read the YAML, apply ``KEY.PATH=VALUE`` overrides, validate.

:func:`load_job_config` is the one way a job file becomes a :class:`~enrich.config.JobConfig`.
Every failure is a one-line :class:`~enrich.errors.ConfigError` naming the file and the key
path as the person wrote it (without pydantic's internal location tags), with a suggestion for
a misspelt key and a note when the bad value came from an override.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from enrich.config.schema import JobConfig
from enrich.errors import ConfigError
from enrich.steps import StepGraphError, check_steps

__all__ = ["load_job_config"]


def load_job_config(
    path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> JobConfig:
    """Read, override and validate the job config at ``path``.

    ``overrides`` are ``KEY.PATH=VALUE`` strings (``execution.max_concurrency=128``,
    ``params.stop=["a","b"]``) or a mapping ``{"key.path": value}``. A string VALUE is parsed as
    YAML (so numbers, booleans, lists and ``null`` get their types), except for text fields such
    as ``prompt.template`` or ``model``, which take the text verbatim unless it is a quoted YAML
    string. Missing intermediate mappings are created.

    Raises:
        ConfigError: one line naming the file and the key path, e.g.
            ``configs/x.yaml: execution.max_concurency: unknown key``.
    """
    where = str(path)
    data = _read_yaml(Path(path), where)
    overridden = _apply_overrides(data, overrides, where)
    data.setdefault("name", Path(path).stem)
    try:
        config = JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, data, where, overridden)) from None
    try:
        check_steps(config)  # which steps read which: before anything is read or sent
    except StepGraphError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def _read_yaml(path: Path, where: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read ({type(exc).__name__}: {exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigError(f"{where}{line}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({exc})") from None
    if data is None:
        raise ConfigError(f"{where}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level")
    return data


def _apply_overrides(
    data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any], where: str
) -> list[tuple[str, ...]]:
    """Set each override in ``data`` in place; return the key paths that were set."""
    if isinstance(overrides, Mapping):
        pairs = [(str(k), v) for k, v in overrides.items()]
    else:
        pairs = []
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{where}: override {item!r}: expected KEY.PATH=VALUE")
            pairs.append((key.strip(), _parse_value(key.strip(), text)))
    done = []
    for key, value in pairs:
        keys = tuple(key.split("."))
        if not all(keys):
            raise ConfigError(f"{where}: override {key!r}: empty key in the path")
        node = data
        for depth, part in enumerate(keys[:-1]):
            child = node.get(part)
            if child is None:  # absent, or an empty section (``params:`` with nothing under it)
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(keys[: depth + 1])
                raise ConfigError(f"{where}: override {key!r}: {prefix} is not a mapping")
            node = child
        node[keys[-1]] = value
        done.append(keys)
    return done


def _parse_value(key: str, text: str) -> Any:
    """A string override's value: YAML, or the verbatim text for text fields."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if _is_text_field(key.split(".")):
        return value if isinstance(value, str) else text
    return value


def _is_text_field(keys: Sequence[str]) -> bool:
    """Whether the key path names a field declared as ``str`` (or ``str | None``)."""
    model: type[BaseModel] = JobConfig
    annotation: Any = None
    for depth, part in enumerate(keys):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        section = _section(annotation)
        if section is not None:
            model = section
        elif depth < len(keys) - 1:
            return False
    if annotation is str:
        return True
    is_union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is (
        typing.Union
    )
    return is_union and set(typing.get_args(annotation)) == {str, type(None)}


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a section's annotation (``PromptSpec``, or ``PromptSpec | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    is_union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is (
        typing.Union
    )
    if is_union:
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(models) == 1 and isinstance(models[0], type) and issubclass(models[0], BaseModel):
            return models[0]
    return None


def _describe_validation(
    exc: ValidationError, data: Mapping[str, Any], where: str, overridden: list[tuple[str, ...]]
) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = _display_loc(first["loc"], data, missing=first["type"] == "missing")
    if first["type"] == "extra_forbidden":
        message = "unknown key" + _suggestion(loc)
    elif first["type"] == "missing":
        message = "field required"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
    key = ".".join(str(p) for p in loc)
    if any(loc[: len(o)] == o for o in overridden):
        message += " (set by an override)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key or '(top level)'}: {message}{more}"


def _display_loc(
    loc: tuple[int | str, ...], data: Mapping[str, Any], *, missing: bool
) -> tuple[str, ...]:
    """The key path a person wrote, without pydantic's union-member tags."""
    parts: list[str] = []
    node: Any = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            parts.append(str(part))
            node = node[part]
        elif missing and i == len(loc) - 1:
            parts.append(str(part))
    return tuple(parts)


def _suggestion(loc: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` when an unknown key is close to a known one."""
    model: type[BaseModel] = JobConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        section = _section(field.annotation if field is not None else None)
        if section is None:
            return ""
        model = section
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1) if loc else []
    return f" (did you mean {close[0]!r}?)" if close else ""
