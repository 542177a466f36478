"""The step graph of a job config: which steps read which, checked when the config loads.

:func:`check_steps` builds a :class:`~enrich.steps.dag.StepNode` per step of a
:class:`~enrich.config.JobConfig` (the fields it reads from its template and ``when:``, the
fields its answer offers: its output schema's properties, and ``completion``) and returns the
order the steps run in. A one-prompt job is one step and always passes. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from enrich.steps.dag import StepNode, order_steps
from enrich.steps.when import parse_when
from enrich.template import PromptTemplate

if TYPE_CHECKING:
    from enrich.config.schema import JobConfig, StepSpec

__all__ = ["COMPLETION_FIELD", "check_steps", "step_fields"]

#: The field every step offers: its answer's text (``{triage.completion}``).
COMPLETION_FIELD = "completion"


def step_fields(output_schema: Mapping[str, Any] | None) -> frozenset[str]:
    """The fields a step's answer offers to later steps."""
    properties = (output_schema or {}).get("properties")
    names = set(properties) if isinstance(properties, Mapping) else set()
    return frozenset({COMPLETION_FIELD, *map(str, names)})


def _node(step: StepSpec) -> StepNode:
    template = PromptTemplate.compile(step.system, step.template, step_fields=True)
    refs = [(s, f, "template") for s, f in template.step_fields]
    if step.when is not None:
        refs += [(s, f, "when") for s, f in parse_when(step.when).refs]
    return StepNode(step.name, tuple(refs), step_fields(step.output_schema))


def check_steps(config: JobConfig) -> list[str]:
    """The names of ``config``'s steps in the order they run (``[]`` for a one-prompt job).

    Raises:
        StepGraphError: a duplicate name, a reference to no step or no field, or a cycle.
    """
    if not config.steps:
        return []
    return order_steps([_node(s) for s in config.steps])
