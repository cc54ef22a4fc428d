"""One `infergate migrate run` per namespace at a time: a coordination.k8s.io Lease.

The Lease ``infergate-migration`` in the migration's namespace names its holder
(``host/pid``) and is renewed while the run lasts; a second run finds it held and is refused
with the holder's name. A holder that died (``kill -9``, a lost laptop) stops renewing: its
Lease expires ``leaseDurationSeconds`` after the last renewal and the next run takes it over.

Taking and renewing go through ``PUT`` with the Lease's ``resourceVersion`` (optimistic
concurrency): of two runs that read the same free Lease, the API server accepts one write and
answers the other 409 Conflict, so exactly one holds it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Final

from infergate.kube.kinds import LEASES
from infergate.kube.lease import LeaseView as LeaseRecord
from infergate.kube.lease import held_spec, lease_object, released_spec
from infergate.migrate.cluster import Cluster, ClusterError
from infergate.migrate.resources import Obj, meta

LEASE_NAME: Final = "infergate-migration"
LEASE_DURATION_S: Final = 30
MAX_CONFLICTS: Final = 5  # 409 answers in a row before giving up on taking the Lease


class LockHeld(Exception):
    """Another run holds the Lease (the message names it and says when it expires)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def holder_identity() -> str:
    """This process, as the Lease names it: ``host/pid``."""
    return f"{socket.gethostname()}/{os.getpid()}"


class LeaseView(LeaseRecord):
    """A Lease's holder and expiry, with the migration's duration when the spec names none."""

    @classmethod
    def of(cls, obj: Obj, default_duration_s: int = LEASE_DURATION_S) -> LeaseView:
        view = LeaseRecord.of(obj, default_duration_s)
        return cls(view.holder, view.renewed_at, view.duration_s, view.acquired_at, view.transitions)


class MigrationLock:
    """The namespace's migration Lease, taken by ``acquire`` and given back by ``release``."""

    def __init__(self, cluster: Cluster, namespace: str, *, identity: str | None = None,
                 duration_s: int = LEASE_DURATION_S, clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.identity = identity or holder_identity()
        self.duration_s = duration_s
        self.clock = clock

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{LEASE_NAME}"

    def acquire(self) -> None:
        """Take the Lease, or raise :class:`LockHeld` while another live holder has it."""
        for _ in range(MAX_CONFLICTS):
            lease = self.cluster.get(LEASES, self.namespace, LEASE_NAME)
            if lease is None:
                # create it free (an apply that names no spec field, so it never clears a holder
                # that another run wrote in between), then take it with a conditional PUT
                lease = self.cluster.apply(LEASES, {"apiVersion": LEASES.api_version, "kind": "Lease",
                                                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace}})
            view = LeaseView.of(lease)
            now = self.clock()
            if view.holder and view.holder != self.identity and view.expires_in(now) > 0:
                raise LockHeld(self._held_message(view, now), view.holder)
            taken_over = bool(view.holder) and view.holder != self.identity
            if self._write(lease, holder=self.identity, acquire=True, transitions=taken_over):
                return
        raise LockHeld(f"{self.where}: other writers kept changing it ({MAX_CONFLICTS} conflicts); try again",
                       "unknown")

    def renew(self) -> bool:
        """Push the expiry forward; False when the Lease is no longer ours (taken over after
        this process missed its renewals, or deleted by hand)."""
        for _ in range(MAX_CONFLICTS):
            lease = self.cluster.get(LEASES, self.namespace, LEASE_NAME)
            if lease is None or LeaseView.of(lease).holder != self.identity:
                return False
            if self._write(lease, holder=self.identity, acquire=False, transitions=False):
                return True
        return False

    def release(self) -> None:
        """Give the Lease back (holder cleared), if it is still ours."""
        for _ in range(MAX_CONFLICTS):
            lease = self.cluster.get(LEASES, self.namespace, LEASE_NAME)
            if lease is None or LeaseView.of(lease).holder != self.identity:
                return
            if self._write(lease, holder="", acquire=False, transitions=False):
                return

    def _write(self, current: Obj, *, holder: str, acquire: bool, transitions: bool) -> bool:
        """A PUT conditional on the Lease's resourceVersion; False on 409 Conflict."""
        spec = current.get("spec") or {}
        if holder:
            spec = held_spec(spec, holder=holder, duration_s=self.duration_s, now=self.clock(),
                             acquire=acquire, transition=transitions)
        else:
            spec = released_spec(spec)
        body = lease_object(self.namespace, LEASE_NAME, spec, meta(current).get("resourceVersion"))
        try:
            self.cluster.replace(LEASES, body)
        except ClusterError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _held_message(self, view: LeaseView, now: float) -> str:
        return (f"another `infergate migrate` is running in namespace {self.namespace}: {self.where} is held by "
                f"{view.holder} (since {view.acquired_at or 'unknown'}; it expires {view.expires_in(now):.0f} s "
                f"after its last renewal unless renewed). Wait for that run to finish; if it was killed, run "
                f"again once the Lease has expired ({view.duration_s} s without renewal)")


class Renewer:
    """Renews a held :class:`MigrationLock` every third of its duration on the event loop (the
    API calls in a worker thread); ``lost`` is set when a renewal finds the Lease taken."""

    def __init__(self, lock: MigrationLock) -> None:
        self.lock = lock
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        interval = max(self.lock.duration_s / 3.0, 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                held = await asyncio.to_thread(self.lock.renew)
            except ClusterError:
                continue  # a transient API error: the next renewal tries again before expiry
            if not held:
                self.lost = True
                return
