"""A state-of-the-world ADS server (``envoy.service.discovery.v3``) on grpc.aio.

One snapshot of resources per xDS type, a version per type, and every connected Envoy
stream. ``push()`` delivers a new :class:`EnvoyResources` make-before-break:

1. clusters and endpoints: the union of the old and the new ones (nothing removed yet),
   and waits until every connected Envoy has ACKed both;
2. listeners and route configurations (the new ones), and waits for their ACKs;
3. clusters and endpoints again, now without the ones no route uses any more, but only those
   with no request in flight (``idle_check``; an in-flight stream, or its open ext_proc stream
   to the EPP, is reset when its cluster goes); busy ones are removed by a background task
   once idle.

So a route never references a cluster Envoy does not have, and a cluster is removed only
after no route points to it (the wrong order gave 453 x 503 in envoy-extproc.md §6).

TLS certificates are ``Secret`` resources (SDS over ADS), staged with step 1 (the union of the
old and the new ones, new content winning) and pruned after step 2. A rotated certificate
keeps its name, so it is a new version of one Secret and no listener changes: Envoy uses it for
new handshakes, connections already open are untouched.

A NACK (a request whose ``response_nonce`` is the latest one sent and which carries
``error_detail``) is logged, kept in ``last_nack``, the snapshot reverts to the last good
config (Envoy keeps serving that, too) and ``push()`` raises :class:`XdsRejected`.

Several Envoys of several Gateways (``infergate gateway --data-plane deployments``): an Envoy
whose node metadata names its Gateway (``gateway: "NS/NAME"``) gets only that Gateway's
listeners (and the internal ones), and one that names its pod IP (``pod_ip``) gets listeners
bound to that address instead of 0.0.0.0, so Envoy pods sharing a machine do not collide
(:func:`node_listeners`). Each node's ACK state is tracked (:meth:`XdsServer.nodes`): a node is
*in sync* when it has ACKed the current version of every type it asked for;
``on_nodes_changed`` is called when that set changes. With ``require_connection=False`` a push
with no Envoy connected just sets the snapshot (Envoys get it when they connect); with
``hold_until_first_push`` no Envoy is answered before the first push, so Envoys reconnecting to
a restarted controller keep serving their last configuration until the new one is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from infergate.dataplane import protos
from infergate.dataplane.xds_translator import (
    T_CLUSTER,
    T_CLUSTER_LOAD_ASSIGNMENT,
    T_LISTENER,
    T_ROUTE_CONFIGURATION,
    T_SECRET,
    EnvoyResources,
)
from infergate.dataplane.xds_translator.common import INVALID_PREFIX

log = logging.getLogger(__name__)

WILDCARD_TYPES = (T_LISTENER, T_CLUSTER)  # SotW: the response carries every resource
NAMED_TYPES = (T_ROUTE_CONFIGURATION, T_CLUSTER_LOAD_ASSIGNMENT, T_SECRET)  # only the requested names
ALL_TYPES = (T_CLUSTER, T_CLUSTER_LOAD_ASSIGNMENT, T_SECRET, T_LISTENER, T_ROUTE_CONFIGURATION)

Resources = dict[str, dict[str, Any]]  # name -> JSON-form resource


class XdsError(RuntimeError):
    pass


class XdsRejected(XdsError):
    """Envoy NACKed a config; it keeps serving the last good one."""

    def __init__(self, type_url: str, version: str, node: str, reason: str) -> None:
        short = type_url.rsplit(".", 1)[-1]
        super().__init__(f"Envoy {node!r} rejected {short} version {version}: {reason}")
        self.type_url = type_url
        self.version = version
        self.node = node
        self.reason = reason


class XdsTimeout(XdsError):
    pass


@dataclass(frozen=True)
class Nack:
    type_url: str
    version: str
    node: str
    reason: str
    at: float


@dataclass(frozen=True)
class XdsEvent:
    """What happened on a stream, in order: ``sent``, ``ack`` or ``nack`` of a type's version."""

    kind: str
    type_url: str
    version: str
    names: frozenset[str]
    node: str


@dataclass(frozen=True)
class NodeInfo:
    """Who is on a stream: its node id and what its node metadata says about it."""

    id: str = "?"
    pod_ip: str | None = None  # listeners bound to 0.0.0.0 bind this address for this node
    gateway: str | None = None  # "NS/NAME": only this Gateway's listeners (None: every listener)

    @classmethod
    def from_node(cls, node: Any) -> NodeInfo:
        fields = node.metadata.fields
        pod_ip = fields["pod_ip"].string_value if "pod_ip" in fields else ""
        gateway = fields["gateway"].string_value if "gateway" in fields else ""
        return cls(node.id or "?", pod_ip or None, gateway or None)


@dataclass(frozen=True)
class NodeState:
    """One connected Envoy's ACK state (``XdsServer.nodes()``)."""

    info: NodeInfo
    in_sync: bool  # ACKed the current version of every type it asked for
    nack: str | None  # the reason of its last NACK of a current version, if any


WILDCARD_ADDRESSES = ("0.0.0.0", "::")


def node_listeners(listeners: Resources, info: NodeInfo) -> Resources:
    """The listeners ``info``'s Envoy gets: its Gateway's (plus internal ones) when it names one,
    and bound to its pod IP instead of a wildcard address when it names one. Pure."""
    prefix = f"gateway/{info.gateway}/" if info.gateway else ""
    out: Resources = {}
    for name, resource in listeners.items():
        if prefix and not (name.startswith(prefix) or name.startswith(INVALID_PREFIX)):
            continue
        socket = (resource.get("address") or {}).get("socket_address") or {}
        if info.pod_ip and socket.get("address") in WILDCARD_ADDRESSES:
            resource = {**resource, "address": {**resource["address"],
                                                "socket_address": {**socket, "address": info.pod_ip}}}
        out[name] = resource
    return out


def route_names(listeners: Resources) -> set[str]:
    """The route configurations ``listeners`` name over RDS."""
    names = set()
    for resource in listeners.values():
        for chain in resource.get("filter_chains") or ():
            for network_filter in chain.get("filters") or ():
                rds = (network_filter.get("typed_config") or {}).get("rds") or {}
                if rds.get("route_config_name"):
                    names.add(str(rds["route_config_name"]))
    return names


@dataclass
class _TypeState:
    subscribed: set[str] = field(default_factory=set)
    requested: bool = False
    sent_version: str | None = None
    sent_names: frozenset[str] = frozenset()
    sent_nonce: str = ""
    acked_version: str | None = None
    acked_names: frozenset[str] = frozenset()
    nacked_version: str | None = None
    nack_reason: str = ""


class _Stream:
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.info = NodeInfo()
        self.outbox: asyncio.Queue[discovery_pb2.DiscoveryResponse | None] = asyncio.Queue()
        self.types: dict[str, _TypeState] = {t: _TypeState() for t in ALL_TYPES}
        self.nonce = 0
        # The listeners as this node gets them (filtered, per-node addresses), for one version.
        self.listeners: tuple[str, Resources, dict[str, any_pb2.Any]] | None = None

    @property
    def node(self) -> str:
        return self.info.id

    @property
    def filtered(self) -> bool:
        return self.info.gateway is not None or self.info.pod_ip is not None


@dataclass
class _Snapshot:
    resources: dict[str, Resources]
    versions: dict[str, str]
    packed: dict[str, dict[str, any_pb2.Any]]


class XdsServer:
    """ADS server; ``await start()``, then ``await push(resources)`` per config change."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_check: Callable[[set[str]], Awaitable[set[str]]] | None = None,
        clusters_warm: Callable[[float], Awaitable[None]] | None = None,
        retire_poll_s: float = 0.5,
        retire_max_s: float = 600.0,
        require_connection: bool = True,
        on_nodes_changed: Callable[[], None] | None = None,
        hold_until_first_push: bool = False,
        isolate_listener_nacks: bool = False,
    ) -> None:
        """``idle_check(names)`` returns the clusters among ``names`` with no request in flight;
        unused clusters that are still busy are removed later (at most ``retire_max_s`` later).
        ``clusters_warm(timeout)`` returns once Envoy has no warming cluster (a new cluster with
        active health checks warms after its first check round, after the ACK).
        ``require_connection``: a push waits for an Envoy to connect (one supervised Envoy);
        False: with none connected, a push just sets what Envoys get when they connect.
        ``on_nodes_changed()`` is called when the set of in-sync nodes changes.
        ``hold_until_first_push``: answer no Envoy before the first push (a restarted controller
        must not hand Envoys that still serve the last configuration an empty one); the first
        push then sends every type at once.
        ``isolate_listener_nacks``: a NACK of listeners or routes by an Envoy that serves one
        Gateway (node metadata ``gateway``) fails that Envoy only: it keeps its last good
        configuration, is not in sync, ``nodes()`` shows the reason, and the push goes on for
        the others (a Gateway whose port cannot be bound must not hold every other Gateway back).
        """
        self._isolate_listener_nacks = isolate_listener_nacks
        self._hold = hold_until_first_push
        self._pushed = False
        self._require_connection = require_connection
        self._on_nodes_changed = on_nodes_changed
        self._nodes_key: tuple[frozenset[str], frozenset[tuple[str, str]]] = (frozenset(), frozenset())
        self._idle_check = idle_check
        self._clusters_warm = clusters_warm
        self._retire_poll_s = retire_poll_s
        self._retire_max_s = retire_max_s
        self._desired_clusters: set[str] = set()
        self._retiring_since: dict[str, float] = {}
        self._retire_task: asyncio.Task[None] | None = None
        self._host = host
        self._port = port
        self._server: grpc.aio.Server | None = None
        self._streams: dict[int, _Stream] = {}
        self._next_stream = 0
        self._counter = 0
        empty: dict[str, Resources] = {t: {} for t in ALL_TYPES}
        self._snapshot = _Snapshot(empty, {t: "0" for t in ALL_TYPES}, {t: {} for t in ALL_TYPES})
        self._good: dict[str, Resources] = {t: {} for t in ALL_TYPES}
        self._cond: asyncio.Condition | None = None
        self._push_lock: asyncio.Lock | None = None
        self.last_nack: Nack | None = None
        self.events: deque[XdsEvent] = deque(maxlen=2000)

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    async def start(self) -> tuple[str, int]:
        self._cond = asyncio.Condition()
        self._push_lock = asyncio.Lock()
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        self._port = server.add_insecure_port(f"{self._host}:{self._port}")
        if self._port == 0:
            raise XdsError(f"could not bind the xDS server to {self._host}")
        await server.start()
        self._server = server
        return self.address

    async def stop(self, grace: float = 0.5) -> None:
        if self._retire_task is not None:
            self._retire_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retire_task
        for stream in self._streams.values():
            stream.outbox.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def __aenter__(self) -> XdsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ inspection

    @property
    def connected_nodes(self) -> list[str]:
        return [s.node for s in self._streams.values()]

    @property
    def versions(self) -> dict[str, str]:
        return dict(self._snapshot.versions)

    def resources(self, type_url: str) -> Resources:
        return dict(self._snapshot.resources[type_url])

    def nodes(self) -> list[NodeState]:
        """Every connected Envoy and whether it runs the current configuration."""
        return [NodeState(s.info, self._in_sync(s), self._current_nack(s)) for s in self._streams.values()]

    def synced_nodes(self) -> frozenset[str]:
        """Ids of the connected nodes that ACKed the current version of everything they asked for."""
        return frozenset(s.node for s in self._streams.values() if self._in_sync(s))

    def _in_sync(self, stream: _Stream) -> bool:
        for type_url in ALL_TYPES:
            state = stream.types[type_url]
            if not state.requested:
                if type_url in WILDCARD_TYPES:
                    return False  # not even asked for listeners and clusters yet
                continue
            if state.acked_version != self._snapshot.versions[type_url]:
                return False
        return True

    def _isolated_nack(self, stream: _Stream) -> tuple[str, ...]:
        """The types a push does not wait for on ``stream``: with ``isolate_listener_nacks``, an
        Envoy of one Gateway that NACKed the current listeners (then its routes, too) or routes."""
        if not self._isolate_listener_nacks or stream.info.gateway is None:
            return ()
        versions = self._snapshot.versions
        if stream.types[T_LISTENER].nacked_version == versions[T_LISTENER]:
            return (T_LISTENER, T_ROUTE_CONFIGURATION)
        if stream.types[T_ROUTE_CONFIGURATION].nacked_version == versions[T_ROUTE_CONFIGURATION]:
            return (T_ROUTE_CONFIGURATION,)
        return ()

    def _current_nack(self, stream: _Stream) -> str | None:
        for type_url in ALL_TYPES:
            state = stream.types[type_url]
            if state.nacked_version is not None and state.nacked_version == self._snapshot.versions[type_url]:
                return state.nack_reason
        return None

    def _notify_nodes(self) -> None:
        nodes = self.nodes()
        key = (frozenset(n.info.id for n in nodes if n.in_sync),
               frozenset((n.info.id, n.nack) for n in nodes if n.nack is not None))
        if key != self._nodes_key:
            self._nodes_key = key
            if self._on_nodes_changed is not None:
                try:
                    self._on_nodes_changed()
                except Exception:  # a listener's bug must not break the xDS stream
                    log.exception("xDS: on_nodes_changed failed")

    async def wait_for_connection(self, timeout: float) -> None:
        assert self._cond is not None
        async with self._cond:
            try:  # asyncio.timeout, not wait_for (see push)
                async with asyncio.timeout(timeout):
                    await self._cond.wait_for(lambda: bool(self._streams))
            except TimeoutError:
                raise XdsTimeout(f"no Envoy connected to the xDS server within {timeout:g}s") from None

    # ------------------------------------------------------------------ pushing

    async def push(self, resources: EnvoyResources, *, timeout: float = 10.0) -> dict[str, str]:
        """Deliver ``resources`` make-before-break; returns the versions once every Envoy ACKed."""
        assert self._push_lock is not None, "start() first"
        new = resources.by_type_url()
        for type_url in ALL_TYPES:  # schema check before anything is sent
            for resource in new[type_url].values():
                protos.to_proto(type_url, resource)
        async with self._push_lock:
            # One time budget for the whole push, shared by its steps; each step waits on the
            # ACK condition (no polling), so this is a deadline, not a wait_until loop.
            deadline = time.monotonic() + timeout
            if self._hold and not self._pushed:
                return await self._first_push(new, deadline)
            old = dict(self._snapshot.resources)  # what every Envoy has ACKed
            try:
                union_c = {**old[T_CLUSTER], **new[T_CLUSTER]}
                union_e = {**old[T_CLUSTER_LOAD_ASSIGNMENT], **new[T_CLUSTER_LOAD_ASSIGNMENT]}
                union_s = {**old[T_SECRET], **new[T_SECRET]}
                changed = await self._stage(
                    {T_CLUSTER: union_c, T_CLUSTER_LOAD_ASSIGNMENT: union_e, T_SECRET: union_s}, deadline
                )
                if changed and self._clusters_warm is not None:
                    await self._clusters_warm(max(0.0, deadline - time.monotonic()))
                await self._stage(
                    {T_LISTENER: new[T_LISTENER], T_ROUTE_CONFIGURATION: new[T_ROUTE_CONFIGURATION]}, deadline
                )
                await self._stage({T_SECRET: new[T_SECRET]}, deadline)  # certificates no listener names
                self._desired_clusters = set(new[T_CLUSTER])
                for name in self._desired_clusters & set(self._retiring_since):
                    del self._retiring_since[name]  # in use again
                await self._remove_unused_clusters(deadline)
            except XdsRejected as exc:
                # Rejected clusters: go back to what Envoy has; later steps: keep the ACKed
                # clusters (they retire once unused and idle).
                base = (
                    old
                    if exc.type_url in (T_CLUSTER, T_CLUSTER_LOAD_ASSIGNMENT)
                    else self._snapshot.resources
                )
                await self._revert(base)
                raise
            self._good = {t: dict(self._snapshot.resources[t]) for t in ALL_TYPES}
            if self._retiring() and (self._retire_task is None or self._retire_task.done()):
                self._retire_task = asyncio.create_task(self._retire_loop(), name="xds-retire-clusters")
            return self.versions

    async def _first_push(self, new: dict[str, Resources], deadline: float) -> dict[str, str]:
        """The held streams' first answer: every type at once (CDS, EDS, SDS before LDS, RDS).

        Nothing was sent before, so there is no make-before-break to keep on this side; a
        reconnecting Envoy replaces its own configuration the way it does on any SotW update.
        """
        self._pushed = True
        changed = self._apply({t: new[t] for t in ALL_TYPES})
        for stream in self._streams.values():
            for type_url in ALL_TYPES:
                self._maybe_send(stream, type_url)  # also the types that stayed empty
        self._good = {t: dict(self._snapshot.resources[t]) for t in ALL_TYPES}  # a NACK keeps this, not nothing
        self._desired_clusters = set(new[T_CLUSTER])
        if changed:
            await self._wait_acked(changed, deadline)
        return self.versions

    def _retiring(self) -> set[str]:
        return set(self._snapshot.resources[T_CLUSTER]) - self._desired_clusters

    async def _remove_unused_clusters(self, deadline: float) -> None:
        """Step 3: remove clusters no route uses, once no request is in flight on them."""
        unused = self._retiring()
        if not unused:
            return
        removable = set(unused)
        if self._idle_check is not None:
            try:
                removable = await self._idle_check(unused)
            except Exception:  # the check is advisory: keep the clusters a while longer
                log.exception("xDS: idle check failed; keeping %s for now", sorted(unused))
                removable = set()
            now = time.monotonic()
            for name in unused - removable:
                since = self._retiring_since.setdefault(name, now)
                if now - since >= self._retire_max_s:
                    removable.add(name)
        if not removable:
            return
        current = self._snapshot.resources
        clusters = {n: r for n, r in current[T_CLUSTER].items() if n not in removable}
        assignments = {n: r for n, r in current[T_CLUSTER_LOAD_ASSIGNMENT].items() if n not in removable}
        await self._stage({T_CLUSTER: clusters, T_CLUSTER_LOAD_ASSIGNMENT: assignments}, deadline)
        for name in removable:
            self._retiring_since.pop(name, None)

    async def _retire_loop(self) -> None:
        """Remove clusters that were still busy at push time, once they are idle."""
        assert self._push_lock is not None
        for _ in range(int(self._retire_max_s / self._retire_poll_s) + 2):
            await asyncio.sleep(self._retire_poll_s)
            async with self._push_lock:
                if not self._retiring():
                    return
                try:
                    await self._remove_unused_clusters(time.monotonic() + 10)
                    self._good = {t: dict(self._snapshot.resources[t]) for t in ALL_TYPES}
                except XdsError as exc:
                    log.error("xDS: removing unused clusters failed: %s", exc)

    async def _stage(self, changes: dict[str, Resources], deadline: float) -> bool:
        changed = self._apply(changes)
        if changed:
            await self._wait_acked(changed, deadline)
        return bool(changed)

    def _apply(self, changes: dict[str, Resources]) -> list[str]:
        """Set the snapshot for the given types; returns the types whose content changed."""
        changed = [t for t in ALL_TYPES if t in changes and changes[t] != self._snapshot.resources[t]]
        if not changed:
            return []
        self._counter += 1
        version = str(self._counter)
        if T_CLUSTER in changed and T_CLUSTER_LOAD_ASSIGNMENT in changes:
            # Envoy re-requests endpoints for a re-warming cluster: give it a fresh version.
            changed = sorted(set(changed) | {T_CLUSTER_LOAD_ASSIGNMENT}, key=ALL_TYPES.index)
        for type_url in changed:
            prev_resources = self._snapshot.resources[type_url]
            prev_packed = self._snapshot.packed[type_url]
            out: dict[str, any_pb2.Any] = {}
            for name, res in changes[type_url].items():
                if prev_resources.get(name) == res and name in prev_packed:
                    out[name] = prev_packed[name]
                else:
                    out[name] = protos.to_any(type_url, res)
            self._snapshot.resources[type_url] = dict(changes[type_url])
            self._snapshot.packed[type_url] = out
            self._snapshot.versions[type_url] = version
        for stream in self._streams.values():
            for type_url in ALL_TYPES:  # CDS before EDS, LDS before RDS
                if type_url in changed:
                    self._maybe_send(stream, type_url)
        self._notify_nodes()
        return changed

    async def _revert(self, base: dict[str, Resources]) -> None:
        """Serve the last good config again (Envoy still runs it). Clusters: the good ones plus
        ``base`` (what Envoy has); those no good route uses retire once idle."""
        good = self._good
        self._apply(
            {
                T_CLUSTER: {**base[T_CLUSTER], **good[T_CLUSTER]},
                T_CLUSTER_LOAD_ASSIGNMENT: {
                    **base[T_CLUSTER_LOAD_ASSIGNMENT],
                    **good[T_CLUSTER_LOAD_ASSIGNMENT],
                },
                T_SECRET: {**base[T_SECRET], **good[T_SECRET]},
            }
        )
        self._apply({T_LISTENER: good[T_LISTENER], T_ROUTE_CONFIGURATION: good[T_ROUTE_CONFIGURATION]})
        self._desired_clusters = set(good[T_CLUSTER])
        if self._retiring() and (self._retire_task is None or self._retire_task.done()):
            self._retire_task = asyncio.create_task(self._retire_loop(), name="xds-retire-clusters")

    async def _wait_acked(self, types: list[str], deadline: float) -> None:
        assert self._cond is not None
        remaining = deadline - time.monotonic()
        if not self._streams:
            if not self._require_connection:
                return  # Envoys get this snapshot when they connect
            await self.wait_for_connection(max(0.0, remaining))
        versions = {t: self._snapshot.versions[t] for t in types}

        def check() -> Nack | bool:
            if not self._streams:
                return not self._require_connection
            for stream in self._streams.values():
                isolated = self._isolated_nack(stream)
                for type_url, version in versions.items():
                    if type_url in isolated:
                        continue  # this Envoy keeps its last good listeners; the others go on
                    state = stream.types[type_url]
                    needed = set(self._snapshot.resources[type_url])
                    if type_url == T_ROUTE_CONFIGURATION and stream.filtered:
                        needed &= route_names(self._listeners_for(stream)[0])  # only its listeners' routes
                    if type_url == T_SECRET:
                        # Envoy asks for a certificate once a listener names it: wait only for
                        # the ones it subscribed to (the others follow their listener).
                        needed &= state.subscribed
                    if type_url in NAMED_TYPES and not needed:
                        continue  # nothing to subscribe to: Envoy may never ask for this type
                    if state.nacked_version == version:
                        return Nack(type_url, version, stream.node, state.nack_reason, time.time())
                    if state.acked_version != version:
                        return False
                    if type_url in NAMED_TYPES and not needed <= state.acked_names:
                        return False
            return True

        async with self._cond:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes with
            # the ACK, and the caller's loop (the controller's sync) then outlived its cancel
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    result = await self._cond.wait_for(check)
            except TimeoutError:
                pending = {t.rsplit(".", 1)[-1]: v for t, v in versions.items()}
                raise XdsTimeout(
                    f"Envoy did not ACK {pending} in time (nodes: {self.connected_nodes})"
                ) from None
        if isinstance(result, Nack):
            raise XdsRejected(result.type_url, result.version, result.node, result.reason)

    # ------------------------------------------------------------------ per stream

    def _maybe_send(self, stream: _Stream, type_url: str) -> None:
        state = stream.types[type_url]
        if not state.requested or (self._hold and not self._pushed):
            return
        version = self._snapshot.versions[type_url]
        available = self._snapshot.packed[type_url]
        if type_url == T_LISTENER and stream.filtered:
            available = self._listeners_for(stream)[1]
        if type_url in WILDCARD_TYPES:
            names = frozenset(available)
        else:
            names = frozenset(n for n in state.subscribed if n in available)
        if state.sent_version == version and state.sent_names == names:
            return
        stream.nonce += 1
        nonce = f"{stream.ident}-{stream.nonce}"
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[available[n] for n in sorted(names)],
        )
        state.sent_version, state.sent_names, state.sent_nonce = version, names, nonce
        self.events.append(XdsEvent("sent", type_url, version, names, stream.node))
        stream.outbox.put_nowait(response)

    def _listeners_for(self, stream: _Stream) -> tuple[Resources, dict[str, any_pb2.Any]]:
        """The listeners of a filtered stream (its Gateway's, at its pod IP), packed once per version."""
        version = self._snapshot.versions[T_LISTENER]
        if stream.listeners is None or stream.listeners[0] != version:
            view = node_listeners(self._snapshot.resources[T_LISTENER], stream.info)
            shared = self._snapshot.packed[T_LISTENER]
            packed = {name: shared[name] if res is self._snapshot.resources[T_LISTENER].get(name)
                      else protos.to_any(T_LISTENER, res) for name, res in view.items()}
            stream.listeners = (version, view, packed)
        return stream.listeners[1], stream.listeners[2]

    async def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> None:
        assert self._cond is not None
        if request.HasField("node") and request.node.id:
            stream.info = NodeInfo.from_node(request.node)
            stream.listeners = None
        type_url = request.type_url
        if type_url not in stream.types:
            log.debug("xDS: ignoring request for unsupported type %s", type_url)
            return
        state = stream.types[type_url]
        state.requested = True
        if type_url in NAMED_TYPES:
            state.subscribed = set(request.resource_names)
        if request.response_nonce and request.response_nonce == state.sent_nonce:
            if request.HasField("error_detail"):
                state.nacked_version = state.sent_version
                self.events.append(
                    XdsEvent("nack", type_url, state.sent_version or "", state.sent_names, stream.node)
                )
                state.nack_reason = request.error_detail.message
                self.last_nack = Nack(
                    type_url, state.sent_version or "", stream.node, state.nack_reason, time.time()
                )
                log.error(
                    "xDS NACK from %s for %s version %s: %s",
                    stream.node,
                    type_url.rsplit(".", 1)[-1],
                    state.sent_version,
                    state.nack_reason,
                )
            else:
                state.acked_version = state.sent_version
                state.acked_names = state.sent_names
                self.events.append(
                    XdsEvent("ack", type_url, state.sent_version or "", state.sent_names, stream.node)
                )
        self._maybe_send(stream, type_url)
        self._notify_nodes()
        async with self._cond:
            self._cond.notify_all()

    async def _serve_stream(
        self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest]
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        assert self._cond is not None
        self._next_stream += 1
        stream = _Stream(self._next_stream)
        self._streams[stream.ident] = stream

        async def read() -> None:
            try:
                async for request in requests:
                    await self._on_request(stream, request)
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            finally:
                stream.outbox.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await stream.outbox.get()
                if item is None:
                    break
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._streams.pop(stream.ident, None)
            self._notify_nodes()
            async with self._cond:
                self._cond.notify_all()


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for response in self._server._serve_stream(request_iterator):
            yield response

    async def DeltaAggregatedResources(self, request_iterator, context):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "infergate serves state-of-the-world ADS only")
