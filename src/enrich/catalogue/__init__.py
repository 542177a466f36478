"""The model catalogue: prices, context, limits and status of the provider's models.

Figures come from the provider (``GET /public/v1/models``, and ``GET /v1/models`` for what the
key may use), else a copy cached for a day, else the snapshot shipped in the package
(:mod:`enrich.catalogue.resolve`); :mod:`enrich.catalogue.verdict` decides whether a job may
use its model and at which prices.
"""

from enrich.catalogue.cache import CACHE_ENV, TTL, CatalogueCache, cache_dir
from enrich.catalogue.entry import Catalogue, CatalogueSource, ModelEntry, ModelStatus
from enrich.catalogue.fetch import CatalogueUnreachable, get_json
from enrich.catalogue.parse import parse_model_ids, parse_models
from enrich.catalogue.resolve import OFFLINE_ENV, load_catalogue
from enrich.catalogue.snapshot import snapshot_catalogue
from enrich.catalogue.verdict import ModelVerdict, Prices, job_prices, judge_model

__all__ = [
    "CACHE_ENV",
    "OFFLINE_ENV",
    "TTL",
    "Catalogue",
    "CatalogueCache",
    "CatalogueSource",
    "CatalogueUnreachable",
    "ModelEntry",
    "ModelStatus",
    "ModelVerdict",
    "Prices",
    "cache_dir",
    "get_json",
    "job_prices",
    "judge_model",
    "load_catalogue",
    "parse_model_ids",
    "parse_models",
    "snapshot_catalogue",
]
