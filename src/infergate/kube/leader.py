"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's ``leaderelection`` does it.

Every candidate runs :meth:`LeaderElector.run`. A candidate reads the Lease every
``retry_period``; it takes the Lease when nobody holds it, when it was given back, or when the
holder's record has not changed for ``leaseDurationSeconds`` *as this candidate observed it*
(client-go's rule: the expiry is measured on the candidate's own monotonic clock from the
moment it last saw the record change, so clock skew between hosts cannot hand the Lease over
early). Writes are ``PUT`` with the ``resourceVersion`` read (optimistic concurrency): of two
candidates that race for a free Lease the API server accepts one and answers the other 409.

Candidates also watch the Lease (one :class:`~infergate.kube.watch.ListWatch`): a change cuts
their wait short, so a Lease given back is taken within a round trip instead of at the next
poll (the polling stays, for API servers or roles that do not allow the watch).

The leader renews (``renewTime``) every ``retry_period``. When a renewal has not succeeded
within ``renew_deadline`` (the API server unreachable, every write refused), or when the Lease
is found held by another identity, it stops leading at once: ``renew_deadline`` is shorter than
``lease_duration``, so the old leader has stepped down before any other candidate may take
over. It then goes back to being a candidate. Cancelling :meth:`run` gives the Lease back
(holder cleared) so that another candidate takes it on its next read instead of waiting for
the expiry.

    elector = LeaderElector(client, "default", "my-lease", default_identity())
    task = asyncio.create_task(elector.run())
    await elector.leading.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from infergate.kube.client import KubeClient
from infergate.kube.errors import Conflict
from infergate.kube.kinds import LEASES
from infergate.kube.lease import (
    Lease,
    LeaseView,
    duration_seconds,
    held_spec,
    lease_object,
    released_spec,
    resource_version,
)
from infergate.kube.watch import ListWatch

log = logging.getLogger(__name__)

Callback = Callable[[], Any]  # a plain function, or one returning an awaitable
JITTER = 0.2  # a candidate's polls are spread over retry_period * [1, 1 + JITTER]
RELEASE_TIMEOUT_S = 2.0


def default_identity() -> str:
    """A unique candidate name, as client-go's users build it: ``<pod>_<uuid>``, the pod's name
    from ``POD_NAME`` (the downward API; the charts set it) else the hostname (a pod's on a real
    node; the machine's under the local runtime, where ``POD_NAME`` tells the pods apart)."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """One candidate for the Lease ``namespace/name``; :attr:`leading` is set while it leads."""

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0, *,
                 on_started_leading: Callback | None = None, on_stopped_leading: Callback | None = None,
                 monotonic: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time
                 ) -> None:
        if not identity:
            raise ValueError("leader election: identity must not be empty")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(f"leader election: need 0 < retry_period ({retry_period}) < renew_deadline "
                             f"({renew_deadline}) < lease_duration ({lease_duration})")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.leading = asyncio.Event()
        self._changed = asyncio.Event()  # set by the watch at every change of the Lease
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._random = random.Random()
        self._observed_spec: Lease | None = None
        self._observed_at = 0.0
        self._last_error = ""

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    @property
    def observed_holder(self) -> str:
        """The holder named by the Lease as last read ("" when free or not read yet)."""
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    async def run(self) -> None:
        """Campaign, lead, step down, campaign again, until cancelled (then give the Lease back)."""
        watch = ListWatch(self.client, LEASES.path(self.namespace), on_list=lambda items: self._changed.set(),
                          on_event=lambda kind, obj: self._changed.set(), name=self.where,
                          field_selector=f"metadata.name={self.name}", retry_delay=self.retry_period)
        watching = asyncio.create_task(watch.run(), name=f"watch {self.where}")
        try:
            while True:
                await self._acquire()
                await self._change(leading=True)
                await self._hold()
                await self._change(leading=False)
        except asyncio.CancelledError:
            if self.is_leader:
                await self._release()
                await self._change(leading=False)
            raise
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    # -- campaigning and holding --------------------------------------------------------

    async def _acquire(self) -> None:
        """Return once this candidate holds the Lease: try now, then at each change of the Lease
        or every retry_period (jittered), whichever comes first."""
        while True:
            self._changed.clear()  # a change seen from now on triggers the next attempt
            if await self._attempt(self.renew_deadline):
                return
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see _attempt
                async with asyncio.timeout(self.retry_period * (1 + JITTER * self._random.random())):
                    await self._changed.wait()

    async def _hold(self) -> None:
        """Renew every retry_period; return when leadership is lost."""
        while True:
            await asyncio.sleep(self.retry_period)
            deadline = self._monotonic() + self.renew_deadline
            while True:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    log.warning("%s: no renewal for %.1f s (renew deadline): %s; stepping down", self.where,
                                self.renew_deadline, self._last_error or "the API server refused every write")
                    return
                if await self._attempt(remaining):
                    break
                if self.observed_holder and self.observed_holder != self.identity:
                    log.warning("%s: now held by %s; stepping down", self.where, self.observed_holder)
                    return
                await asyncio.sleep(min(self.retry_period, max(deadline - self._monotonic(), 0.0)))

    async def _attempt(self, timeout: float) -> bool:
        """One try to take or renew the Lease within ``timeout`` seconds; False on any failure."""
        try:  # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as the
            # attempt completes, and the elector then campaigned on after its cancel
            async with asyncio.timeout(timeout):
                return await self._try_acquire_or_renew()
        except Exception as exc:  # any failure (API error, timeout, a garbled answer) is a failed attempt
            message = str(exc) or type(exc).__name__
            if message != self._last_error:
                log.info("%s: %s", self.where, message)
            self._last_error = message
            return False

    async def _try_acquire_or_renew(self) -> bool:
        path = LEASES.path(self.namespace, self.name)
        duration_s = duration_seconds(self.lease_duration)
        current = await self.client.get(path)
        if current is None:
            spec = held_spec({}, holder=self.identity, duration_s=duration_s, now=self._wall_clock(),
                             acquire=True, transition=False)
            try:
                created = await self.client.create(LEASES.path(self.namespace),
                                                   lease_object(self.namespace, self.name, spec))
            except Conflict:  # AlreadyExists: another candidate created it first
                return False
            self._observe(created)
            return True
        self._observe(current)
        view = LeaseView.of(current, duration_s)
        if view.holder and view.holder != self.identity and not self._expired(view):
            return False
        taking = view.holder != self.identity
        spec = held_spec(current.get("spec") or {}, holder=self.identity, duration_s=duration_s,
                         now=self._wall_clock(), acquire=taking, transition=taking)
        try:
            updated = await self.client.replace(
                path, lease_object(self.namespace, self.name, spec, resource_version(current)))
        except Conflict:  # someone wrote since our read: read again next time
            return False
        if taking:
            log.info("%s: acquired by %s (previous holder: %s)", self.where, self.identity, view.holder or "none")
        self._observe(updated)
        self._last_error = ""
        return True

    def _observe(self, lease: Lease) -> None:
        spec = dict(lease.get("spec") or {})
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = self._monotonic()

    def _expired(self, view: LeaseView) -> bool:
        return self._observed_at + view.duration_s <= self._monotonic()

    async def _release(self) -> None:
        """Clear the holder if the Lease is still ours (best effort, bounded: we are shutting down)."""
        try:
            await asyncio.wait_for(self._write_released(), RELEASE_TIMEOUT_S)
        except Exception as exc:  # best effort: the Lease expires anyway
            log.info("%s: could not give it back (%s); it expires after %.0f s", self.where, exc,
                     self.lease_duration)

    async def _write_released(self) -> None:
        path = LEASES.path(self.namespace, self.name)
        current = await self.client.get(path)
        if current is None or LeaseView.of(current).holder != self.identity:
            return
        body = lease_object(self.namespace, self.name, released_spec(current.get("spec") or {}),
                            resource_version(current))
        try:
            await self.client.replace(path, body)
        except Conflict:
            return
        log.info("%s: released by %s", self.where, self.identity)

    async def _change(self, *, leading: bool) -> None:
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        callback = self.on_started_leading if leading else self.on_stopped_leading
        if callback is None:
            return
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: the %s callback failed", self.where,
                          "on_started_leading" if leading else "on_stopped_leading")
