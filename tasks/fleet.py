"""One account budget for a fleet: the grant source over Prefect global concurrency limits.

Every process working for the account (backfill partitions, scheduled runs, any number of
workers) draws its requests and tokens per minute from two rate limits on the Prefect server:

=========================== =========================== ===================================
limit                        ``limit``                   ``slot_decay_per_second``
=========================== =========================== ===================================
``enrich-rpm-<fleet name>``  requests per minute         requests per minute / 60
``enrich-tpm-<fleet name>``  tokens per minute           tokens per minute / 60
=========================== =========================== ===================================

The fleet name is ``execution.fleet_name``, by default the model, since Cerebras' limits are per
model of an account. The project creates or updates the limits from the job config when a run
starts (:func:`ensure_fleet_limits`): the last run started sets them. A rate limit whose slots
decay is a bucket that refills at the quota's rate, the same shape as the provider's; the
grants taken from it (:class:`PrefectGrants`, ``rate_limit(name, occupy=N, strict=True)``, a
few seconds' worth at once, see :mod:`enrich.ratelimit.grants`) are what each process's
controller paces within. ``strict=True``: a limit that went missing fails the run rather than
letting it run unthrottled.

Daily quotas are not shared here: a decaying limit is a rolling window, the provider's daily
quota resets at a fixed time. Each process follows the provider's daily headers, which count
the whole account, and stops when the day's quota is gone.
"""

from __future__ import annotations

import re

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import deployment

from enrich.config import JobConfig
from enrich.ratelimit.grants import Grant

__all__ = [
    "PrefectGrants",
    "ensure_fleet_limits",
    "fleet_grants",
    "fleet_limit_names",
    "fleet_on",
]


def fleet_limit_names(cfg: JobConfig) -> tuple[str, str]:
    """The names of the fleet's requests and tokens limits for this job."""
    name = cfg.execution.fleet_name or cfg.model
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return f"enrich-rpm-{slug}", f"enrich-tpm-{slug}"


def fleet_on(cfg: JobConfig, in_deployment: bool) -> bool:
    """Whether this run shares a fleet budget: ``execution.fleet``, else when a deployment's run
    (a worker's) and the job has a per-minute limit to share."""
    ex = cfg.execution
    if ex.requests_per_minute is None and ex.tokens_per_minute is None:
        return False
    return in_deployment if ex.fleet is None else ex.fleet


class PrefectGrants:
    """Grants from the fleet's two rate limits (:class:`enrich.ratelimit.grants.Grants`).

    A limit of ``None`` is not shared. Each ask is at most two acquires (70-140 ms each), so
    grants come seldom: a few seconds' worth of sending at a time.
    """

    def __init__(
        self,
        names: tuple[str, str],
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
    ) -> None:
        self.names = names
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute

    async def take(self, requests: int, tokens: int) -> Grant:
        """Wait for ``requests`` and ``tokens`` slots (0: not asked) and return them."""
        rpm_name, tpm_name = self.names
        if requests and self.requests_per_minute:
            await rate_limit(rpm_name, occupy=requests, strict=True)
        if tokens and self.tokens_per_minute:
            await rate_limit(tpm_name, occupy=tokens, strict=True)
        return Grant(requests, tokens)


async def ensure_fleet_limits(cfg: JobConfig) -> PrefectGrants:
    """Create or update the fleet's limits from the job's per-minute quotas."""
    ex = cfg.execution
    names = fleet_limit_names(cfg)
    async with get_client() as client:
        quotas = (ex.requests_per_minute, ex.tokens_per_minute)
        for name, per_minute in zip(names, quotas, strict=True):
            if per_minute is None:
                continue
            limit = max(1, int(per_minute))
            try:
                await client.upsert_global_concurrency_limit_by_name(
                    name, limit, slot_decay_per_second=per_minute / 60
                )
            except ObjectAlreadyExists:  # another run created it between our read and write
                await client.upsert_global_concurrency_limit_by_name(
                    name, limit, slot_decay_per_second=per_minute / 60
                )
    return PrefectGrants(names, ex.requests_per_minute, ex.tokens_per_minute)


async def fleet_grants(cfg: JobConfig) -> PrefectGrants | None:
    """The grant source a run of ``cfg`` uses inside a flow run, or None (see :func:`fleet_on`)."""
    if not fleet_on(cfg, deployment.get_id() is not None):
        return None
    return await ensure_fleet_limits(cfg)
