"""When one EPP is ready, and what its gRPC health service answers for each service name.

The EPP protocol (GIE v1.6.0 ``endpoint-picker-protocol.md``, "Health Checking") names three
services: ``liveness`` (SERVING while the process answers at all), ``readiness`` (SERVING once
the datastore has synced and, with leader election, while this replica leads) and
``envoy.service.ext_proc.v3.ExternalProcessor`` (as readiness). Without leader election every
other name answers as readiness too (upstream v1.0's chart probes ``inference-extension``);
with it, other names are SERVICE_UNKNOWN, as upstream's EPP.

Ready means, in order, with no fixed delay anywhere:

1. the pool and its pods have had their first list (the pool alone is upstream's
   ``PoolHasSynced``; without the pods the first requests would find no endpoint);
2. each endpoint known then has had its first metrics scrape (answered or failed), so the first
   picks use real load figures; an endpoint whose scrape hangs holds this back ``max_warmup``
   seconds at most. This is latched: endpoints added later do not take readiness away;
3. with ``--ha-enable-leader-election``, this replica holds the pool's Lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from infergate.epp.datastore import Datastore
from infergate.epp.metrics_scraper import MetricsStore

log = logging.getLogger(__name__)

LIVENESS: Final = "liveness"
READINESS: Final = "readiness"
EXT_PROC_SERVICE: Final = "envoy.service.ext_proc.v3.ExternalProcessor"
CHART_SERVICE: Final = "inference-extension"  # what upstream v1.0's chart probes without leader election
LEASE_SUFFIX: Final = "gateway-api-inference-extension.sigs.k8s.io"


def lease_name(pool_namespace: str, pool_name: str) -> str:
    """The leader-election Lease of a pool's EPPs, named as upstream's EPP names it."""
    return f"epp-{pool_namespace}-{pool_name}.{LEASE_SUFFIX}"


def health_names(leader_election: bool) -> tuple[frozenset[str] | None, frozenset[str]]:
    """(names answered with readiness — None: every name —, names always SERVING)."""
    known = frozenset({READINESS, "", EXT_PROC_SERVICE}) if leader_election else None
    return known, frozenset({LIVENESS})


class Readiness:
    """The EPP's readiness from its datastore, metrics store, source and (optional) leadership."""

    def __init__(self, datastore: Datastore, store: MetricsStore, *, listed: Callable[[], bool] | None = None,
                 leader: Callable[[], bool] | None = None, max_warmup: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.datastore = datastore
        self.store = store
        self._listed = listed  # None: the source fills pool and pods at once
        self._leader = leader  # None: no leader election
        self._clock = clock
        self._started = clock()
        self._listed_at: float | None = None
        self.max_warmup = max_warmup
        self.warm_after: float | None = None  # seconds from construction to steps 1 and 2 done

    def listed(self) -> bool:
        return self.datastore.synced and (self._listed is None or self._listed())

    def unscraped(self) -> list[str]:
        """Endpoints whose first scrape has not finished yet."""
        attempted = self.store.failures_by_endpoint  # every finished scrape leaves an entry (0 on success)
        return [e.hostport for e in self.datastore.endpoints() if e.hostport not in attempted]

    def warm(self) -> bool:
        """Steps 1 and 2 (latched once reached)."""
        if self.warm_after is None:
            if not self.listed():
                return False
            now = self._clock()
            if self._listed_at is None:
                self._listed_at = now
            pending = self.unscraped()
            if pending and now - self._listed_at < self.max_warmup:
                return False
            if pending:
                log.warning("ready without a first scrape of %s (none finished within %.1f s)", ", ".join(pending),
                            self.max_warmup)
            self.warm_after = now - self._started
            log.info("datastore synced: pool and pods listed, %d endpoint(s) scraped, %.3f s after start",
                     len(self.datastore.endpoints()), self.warm_after)
        return True

    def leading(self) -> bool:
        return self._leader is None or self._leader()

    def __call__(self) -> bool:
        """Ready: warm, the pool still known, and leading when leader election is on."""
        return self.warm() and self.datastore.synced and self.leading()

    def waiting_for(self) -> list[str]:
        """What readiness still waits for, in words (for logs and errors)."""
        waiting = []
        if not self.listed():
            waiting.append("the pool and its pods to be listed")
        elif not self.warm() and (pending := self.unscraped()):
            waiting.append(f"the first scrape of {', '.join(pending)}")
        if not self.leading():
            waiting.append("leadership")
        return waiting
