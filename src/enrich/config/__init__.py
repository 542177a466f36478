"""The job config: its schema (:mod:`.schema`, the models) and its loader (:mod:`.loader`).

``from enrich.config import JobConfig, load_job_config`` is how the rest of the project uses it;
the sections' models (``InputSpec``, ``ExecutionSpec``...) are in :mod:`enrich.config.schema`.
"""

from enrich.config.loader import load_job_config
from enrich.config.schema import JobConfig

__all__ = ["JobConfig", "load_job_config"]
