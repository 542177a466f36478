"""The job config: its schema (:mod:`.schema`, the models) and its loader (:mod:`.loader`).

``from enrich.config import JobConfig, load_job_config`` is how the rest of the project uses it
(and ``refuse_api_overrides`` where overrides come from whoever starts a run, :mod:`.guard`);
the sections' models (``InputSpec``, ``ExecutionSpec``...) are in :mod:`enrich.config.schema`.
"""

from enrich.config.guard import refuse_api_overrides
from enrich.config.loader import load_job_config
from enrich.config.schema import JobConfig

__all__ = ["JobConfig", "load_job_config", "refuse_api_overrides"]
