"""coordination.k8s.io/v1 Lease records: reading who holds one and writing the next spec.

Shared by the two Lease users: ``infergate migrate``'s per-namespace lock
(:mod:`infergate.migrate.lock`) and the EPP's leader election (:mod:`infergate.kube.leader`).
Both write with ``PUT`` carrying the Lease's ``resourceVersion`` (optimistic concurrency: of two
writers that read the same version, the API server accepts one and answers the other 409).

The spec fields are client-go's leader-election record: ``holderIdentity``,
``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` (MicroTime) and ``leaseTransitions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infergate.kube.kinds import LEASES
from infergate.util.clock import parse_timestamp

Lease = dict[str, Any]


def micro_time(seconds: float) -> str:
    """A Kubernetes MicroTime (``2026-12-06T03:00:00.123456Z``) for a Unix time."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_seconds(duration: float) -> int:
    """``leaseDurationSeconds`` (an integer) for a duration in seconds: rounded up, at least 1."""
    return max(1, math.ceil(duration))


@dataclass(frozen=True)
class LeaseView:
    """Who holds a Lease and until when, as its spec says."""

    holder: str
    renewed_at: float | None  # Unix time of the last renewal (None: never)
    duration_s: int
    acquired_at: str
    transitions: int = 0

    @classmethod
    def of(cls, lease: Lease, default_duration_s: int = 15) -> LeaseView:
        spec = lease.get("spec") or {}
        renew = spec.get("renewTime") or spec.get("acquireTime")
        renewed_at = parse_timestamp(str(renew)).timestamp() if renew else None
        return cls(str(spec.get("holderIdentity") or ""), renewed_at,
                   int(spec.get("leaseDurationSeconds") or default_duration_s), str(spec.get("acquireTime") or ""),
                   int(spec.get("leaseTransitions") or 0))

    def expires_in(self, now: float) -> float:
        """Seconds until the holder's claim lapses by the spec's clock (<= 0: expired or never renewed)."""
        return 0.0 if self.renewed_at is None else self.renewed_at + self.duration_s - now


def held_spec(spec: Lease, *, holder: str, duration_s: int, now: float, acquire: bool, transition: bool) -> Lease:
    """The spec after ``holder`` takes (``acquire``: acquireTime set to now) or renews the Lease;
    ``transition`` counts one more change of holder in ``leaseTransitions``."""
    out = dict(spec)
    out.update(holderIdentity=holder, leaseDurationSeconds=duration_s, renewTime=micro_time(now))
    if acquire:
        out["acquireTime"] = micro_time(now)
    if transition:
        out["leaseTransitions"] = int(out.get("leaseTransitions") or 0) + 1
    return out


def released_spec(spec: Lease) -> Lease:
    """The spec after its holder gives it back: no holder, free for the next taker at once."""
    out = dict(spec)
    for key in ("holderIdentity", "renewTime", "acquireTime"):
        out.pop(key, None)
    return out


def lease_object(namespace: str, name: str, spec: Lease | None = None, resource_version: str | None = None) -> Lease:
    """A Lease body for create (no resourceVersion) or a conditional replace (with the one read)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    body: Lease = {"apiVersion": LEASES.api_version, "kind": "Lease", "metadata": metadata}
    if spec is not None:
        body["spec"] = spec
    return body


def resource_version(lease: Lease) -> str | None:
    version = (lease.get("metadata") or {}).get("resourceVersion")
    return str(version) if version is not None else None
