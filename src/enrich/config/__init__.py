"""The job config: its schema (:mod:`.schema`, the models) and its loader (:mod:`.loader`).

``from enrich.config import JobConfig, load_job_config`` is how the rest of the project uses it.
"""

from enrich.config.loader import load_job_config
from enrich.config.schema import (
    ApiSpec,
    ExecutionSpec,
    InputSpec,
    JobConfig,
    ModelParams,
    OutputSpec,
    PricingSpec,
    PromptSpec,
    RetrySpec,
)

__all__ = [
    "ApiSpec",
    "ExecutionSpec",
    "InputSpec",
    "JobConfig",
    "ModelParams",
    "OutputSpec",
    "PricingSpec",
    "PromptSpec",
    "RetrySpec",
    "load_job_config",
]
