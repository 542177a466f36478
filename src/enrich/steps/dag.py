"""The steps of a job as a small graph: what each step reads, checked before anything is sent.

A step reads the input's columns and, through ``{step.field}`` in its template or a
``when:`` condition, fields of other steps. :func:`order_steps` checks the graph and returns
the steps in an order where every step comes after the steps it reads (the order written,
where that already works):

* two steps with one name;
* a reference to a step that does not exist, or to a field its output does not have;
* a step that reads itself, or a cycle (``a -> b -> a``).

Each problem is a :class:`StepGraphError`, one line naming the step and the reference. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["StepGraphError", "StepNode", "order_steps"]


class StepGraphError(ValueError):
    """A step graph that cannot run; ``str()`` is one line naming the step."""


@dataclass(frozen=True, slots=True)
class StepNode:
    """One step as the graph sees it.

    ``refs`` are the ``(step, field)`` pairs it reads, each with where it reads it
    (``template`` or ``when``); ``fields`` are the fields its answer offers (None: any field
    can be asked for, which is never the case for a configured step, but keeps tests short).
    """

    name: str
    refs: tuple[tuple[str, str, str], ...] = ()
    fields: frozenset[str] | None = None


def order_steps(steps: Sequence[StepNode]) -> list[str]:
    """The step names in an order that runs every step after the steps it reads.

    Raises:
        StepGraphError: a duplicate name, an unknown step or field, or a cycle.
    """
    by_name: dict[str, StepNode] = {}
    for step in steps:
        if step.name in by_name:
            raise StepGraphError(f"steps: two steps are named {step.name!r}")
        by_name[step.name] = step
    needs: dict[str, list[str]] = {}
    for step in steps:
        needs[step.name] = []
        for ref_step, field, where in step.refs:
            shown = f"{{{ref_step}.{field}}}" if where == "template" else f"{ref_step}.{field}"
            other = by_name.get(ref_step)
            if other is None:
                known = ", ".join(by_name)
                raise StepGraphError(
                    f"steps.{step.name}.{where}: {shown} names no step (steps: {known})"
                )
            if other.name == step.name:
                raise StepGraphError(
                    f"steps.{step.name}.{where}: {shown}: a step cannot read its own answer"
                )
            if other.fields is not None and field not in other.fields:
                offered = ", ".join(sorted(other.fields))
                raise StepGraphError(
                    f"steps.{step.name}.{where}: {shown}: step {ref_step!r} has no field "
                    f"{field!r} (it has: {offered})"
                )
            if ref_step not in needs[step.name]:
                needs[step.name].append(ref_step)
    return _topological([s.name for s in steps], needs)


def _topological(names: Sequence[str], needs: Mapping[str, Sequence[str]]) -> list[str]:
    """``names`` ordered so each comes after what it needs, stable; a cycle is an error."""
    done: list[str] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in placed:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise StepGraphError(f"steps: a cycle: {' reads '.join(cycle)}")
        visiting.append(name)
        for other in needs[name]:
            visit(other)
        visiting.pop()
        placed.add(name)
        done.append(name)

    for name in names:
        visit(name)
    return done
