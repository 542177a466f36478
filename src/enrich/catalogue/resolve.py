"""Which catalogue a job uses: the provider's, a cached copy, or the shipped snapshot.

In order:

1. a cache of this endpoint fetched less than a day ago (:data:`~enrich.catalogue.cache.TTL`),
   unless ``refresh`` is asked or it does not list the model the job wants;
2. the provider, live: ``GET {base}/public/v1/models``, then cached;
3. a stale cache of this endpoint, when the provider cannot be reached;
4. the snapshot shipped in the package.

Whenever the provider is asked (not offline) and a key is at hand, ``GET {base}/v1/models``
says which models the key may use (:attr:`Catalogue.served`). Being offline is never an
error: the catalogue says where its figures come from and why. ``$ENRICH_CATALOGUE_OFFLINE``
(any value but ``0``/empty) skips the provider altogether: cache, then snapshot.

Time, the network and the cache folder are injected; :func:`load_catalogue`'s defaults are the
real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from enrich.catalogue.cache import CachedBody, CatalogueCache, cache_dir
from enrich.catalogue.entry import Catalogue
from enrich.catalogue.fetch import CatalogueUnreachable, Fetcher, get_json
from enrich.catalogue.parse import parse_model_ids, parse_models
from enrich.catalogue.snapshot import snapshot_catalogue
from enrich.config.schema import ApiSpec
from enrich.hashing import endpoint_identity

__all__ = ["OFFLINE_ENV", "PUBLIC_PATH", "SERVED_PATH", "load_catalogue", "utc_now"]

OFFLINE_ENV = "ENRICH_CATALOGUE_OFFLINE"
PUBLIC_PATH = "/public/v1/models"
SERVED_PATH = "/v1/models"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _offline(environ: Mapping[str, str]) -> bool:
    return environ.get(OFFLINE_ENV, "") not in ("", "0")


#: How long a process takes an endpoint that did not answer as unreachable before asking again.
UNREACHABLE_FOR = timedelta(minutes=10)
# Endpoints (with the fetcher that asked) that did not answer in this process, and when.
_UNREACHABLE: dict[tuple[str, Fetcher], tuple[datetime, str]] = {}


def load_catalogue(
    api: ApiSpec,
    environ: Mapping[str, str],
    *,
    want: str | None = None,
    refresh: bool = False,
    now: Callable[[], datetime] = utc_now,
    fetch: Fetcher = get_json,
    cache: CatalogueCache | None = None,
) -> Catalogue:
    """The catalogue of the endpoint ``api`` resolves to (see the module doc for the order).

    ``want`` is the model the caller is about to use: a fresh cache that does not list it is
    not trusted to say it is gone, and the provider is asked.

    Raises:
        ConfigError: ``CEREBRAS_BASE_URL`` is an endpoint the key must not be sent to.
    """
    endpoint = endpoint_identity(api.endpoint(environ))
    cache = cache or CatalogueCache(cache_dir(environ) / "catalogue")
    cached = cache.read(endpoint)
    moment = now()
    if cached is not None and cached.fresh(moment) and not refresh:
        models = parse_models(cached.body)
        if want is None or want in models:
            return Catalogue(endpoint, "cache", cached.fetched_at, models)
    if _offline(environ):
        return _fallback(endpoint, cached, moment, f"${OFFLINE_ENV} is set")
    failed = _UNREACHABLE.get((endpoint, fetch))
    if failed is not None and moment - failed[0] < UNREACHABLE_FOR and not refresh:
        # Asked a moment ago and got nothing: every job a schedule judges would wait out
        # the same timeouts again.
        return _fallback(endpoint, cached, moment, failed[1])
    key = environ.get(api.api_key_env) or None
    served = _served(endpoint, key, fetch)
    try:
        body = fetch(endpoint + PUBLIC_PATH, None)
    except CatalogueUnreachable as exc:
        _UNREACHABLE[(endpoint, fetch)] = (moment, str(exc))
        return _fallback(endpoint, cached, moment, str(exc), served)
    _UNREACHABLE.pop((endpoint, fetch), None)
    models = parse_models(body)
    if not models:
        return _fallback(endpoint, cached, moment, f"GET {endpoint}{PUBLIC_PATH}: no models")
    cache.write(endpoint, CachedBody(moment, body))
    return Catalogue(endpoint, "live", moment, models, served)


def _served(endpoint: str, key: str | None, fetch: Fetcher) -> frozenset[str] | None:
    """What the key may use, or None when there is no key or no answer."""
    if key is None:
        return None
    try:
        ids = parse_model_ids(fetch(endpoint + SERVED_PATH, key))
    except CatalogueUnreachable:
        return None
    return ids or None


def _fallback(
    endpoint: str,
    cached: CachedBody | None,
    moment: datetime,
    why: str,
    served: frozenset[str] | None = None,
) -> Catalogue:
    """The cache, however old, else the snapshot; both say why the provider was not used."""
    if cached is not None:
        models = parse_models(cached.body)
        if models:
            stale = not cached.fresh(moment)
            return Catalogue(
                endpoint, "cache", cached.fetched_at, models, served, stale=stale, unreachable=why
            )
    snapshot = snapshot_catalogue(endpoint, unreachable=why)
    if served is None:
        return snapshot
    return Catalogue(endpoint, "snapshot", snapshot.as_of, snapshot.models, served, unreachable=why)
