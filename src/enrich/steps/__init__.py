"""Several steps per job: the ``when:`` language, the step graph, and each step at run time.

* :mod:`.when` -- ``when:`` conditions, parsed and judged without ``eval``;
* :mod:`.dag` -- a step graph's checks (duplicates, unknown references, cycles) and order;
* :mod:`.graph` -- the graph of a job config's steps (:func:`check_steps`);
* :mod:`.step` -- :class:`Step`: one step ready to render, hash and send, built from the config;
* :mod:`.table` -- a multi-step chunk's output columns: per step, then the row's totals.

All pure but the building of a step, which reads the environment's endpoint through the job.
"""

from enrich.steps.dag import StepGraphError, StepNode, order_steps
from enrich.steps.graph import COMPLETION_FIELD, check_steps, step_fields
from enrich.steps.when import Condition, WhenError, parse_when

__all__ = [
    "COMPLETION_FIELD",
    "Condition",
    "StepGraphError",
    "StepNode",
    "WhenError",
    "check_steps",
    "order_steps",
    "parse_when",
    "step_fields",
]
