"""Structured outputs: a step's output schema, from the config to typed columns.

* :mod:`.fields` -- the short field list (``score: int``) turned into a JSON Schema;
* :mod:`.lint` -- what strict mode would refuse, one finding per line, before anything is sent;
* :mod:`.arrow` -- the Arrow type of each property's column;
* :mod:`.output` -- :class:`OutputSchema`: the request's ``response_format``, the judgement of
  one answer, the typed columns and what the manifest records.

All pure. The engine uses :class:`OutputSchema`; the config uses :func:`field_list_schema`.
"""

from enrich.structured.fields import FieldListError, field_list_schema, is_json_schema
from enrich.structured.lint import (
    Finding,
    OutputSchemaRefused,
    check_output_schema,
    lint_schema,
)
from enrich.structured.output import DEFAULT_SCHEMA_NAME, OutputSchema, ParsedOutput

__all__ = [
    "DEFAULT_SCHEMA_NAME",
    "FieldListError",
    "Finding",
    "OutputSchema",
    "OutputSchemaRefused",
    "ParsedOutput",
    "check_output_schema",
    "field_list_schema",
    "is_json_schema",
    "lint_schema",
]
