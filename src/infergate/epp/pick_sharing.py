"""Pick sharing: EPP replicas active-active tell each other where they sent each prompt.

An EPP learns which endpoint holds a prompt's prefix from its own picks (``prefix-cache-scorer``'s
approximate index). N replicas behind one Service each see 1/N of the picks, so a replica sends a
prefix that another one placed to an endpoint that does not hold it: measured with
``bench peers --epp-replicas 2`` on shared-prefix, the replicas' prefix-cache hit rate fell from
89% to 79-81% and TTFT p90 rose 12-19%.

With pick sharing each replica publishes every pick's block hashes on a ZMQ PUB socket
(``--pick-sharing-port``), subscribes to the other replicas (``--pick-sharing-peers``), and adds
their picks to its own index as if it had made them. The pick also counts as load on that
endpoint (``InflightLoad.note_peer_pick``: a request, and its prompt's part the endpoint does not
hold as pending prefill) until a scrape taken after it shows it: replicas that pick at the same
moment (a closed loop's cold burst) see each other within a millisecond instead of a scrape
interval. The peers' picks are applied before each match (:meth:`PickSharing.drain`, at most
:data:`MAX_DRAIN` messages), and every :data:`POLL_INTERVAL_S` by the receive task for a replica
that matches nothing meanwhile: back-to-back requests alternating between two replicas (a
conversation's turns, a burst) lost the race with the peer's message on 6-17% of the turns when
picks were applied only as the event loop turned to the socket, and a wake-up per message cost
250-350 us of CPU per pick against ~130 us now.

Wire: two frames, the topic :data:`TOPIC` and a msgpack array
``[sender, plugin, block_size, endpoint, hashes, prompt_chars]``: the sending process's random id
(its own messages are ignored, so every replica can be given the same peer list), the prefix
plugin's name in the EndpointPickerConfig, its hash block size (a message for another block size
or an unknown plugin is dropped: replicas must run the same config), the endpoint ``ip:port``, the
block hashes (64-bit integers, at most :data:`MAX_HASHES`) and the prompt's length in characters. ZMQ's PUB socket drops messages for a slow
subscriber (high-water mark) and a peer that is down; a lost message costs one pick's affinity,
nothing else.

Peers are ``HOST:PORT`` entries (``--pick-sharing-peers``; HOST may be a DNS name with several
addresses, e.g. a headless Service over the EPP's pods: it is resolved again every
:data:`RESOLVE_INTERVAL_S`), or the pods of the pool's namespace that a label selector matches
(``--pick-sharing-peer-pods``, :class:`PodPeers`: from the EPP's own pod watch, on any cluster and on
``infergate up``, whose pods have no DNS), at this EPP's port. Addresses that come and go are
connected and disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import zmq
import zmq.asyncio
from prometheus_client import CollectorRegistry, Counter

from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer
from infergate.util.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TOPIC: Final = b"infergate.picks.v1"
MAX_HASHES: Final = 4096  # a message with more is dropped (a scorer matches at most 256 blocks by default)
MAX_TEXT: Final = 256  # plugin names and endpoints longer than this are dropped
MAX_PROMPT_CHARS: Final = 1 << 31
RESOLVE_INTERVAL_S: Final = 10.0
MAX_DRAIN: Final = 1024  # peer messages applied before one match at most (the rest: by the receive task)
# the receive task drains the socket this often (each match drains it first too): a wake-up costs
# ~0.2 ms of CPU whether messages wait or not, so 20 per second while idle
POLL_INTERVAL_S: Final = 0.05
MAX_DRAIN_ROUNDS: Final = 8  # drains of MAX_DRAIN per poll at most
RECEIVE_HWM: Final = 10_000  # messages queued per peer before SUB drops (ZMQ's default is 1,000)
SEND_HWM: Final = 10_000  # messages queued per subscriber before PUB drops

class PickSharingError(ValueError):
    """A peer entry that is not HOST:PORT."""


@dataclass(frozen=True)
class Pick:
    sender: bytes
    plugin: str
    block_size: int
    endpoint: str
    hashes: list[int]
    prompt_chars: int = 0


def encode(pick: Pick) -> list[bytes]:
    return [TOPIC, msgpack.packb([pick.sender, pick.plugin, pick.block_size, pick.endpoint, pick.hashes,
                                  pick.prompt_chars])]


def decode(frames: Sequence[bytes]) -> Pick | None:
    """The pick in a message, or None for anything malformed or over the bounds."""
    if len(frames) != 2 or frames[0] != TOPIC:
        return None
    try:
        data = msgpack.unpackb(frames[1], raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    if not isinstance(data, list) or len(data) != 6:
        return None
    sender, plugin, block_size, endpoint, hashes, prompt_chars = data
    if not (isinstance(sender, bytes) and isinstance(plugin, str) and isinstance(endpoint, str)
            and isinstance(block_size, int) and isinstance(hashes, list) and isinstance(prompt_chars, int)):
        return None
    if len(plugin) > MAX_TEXT or len(endpoint) > MAX_TEXT or len(hashes) > MAX_HASHES or block_size <= 0 \
            or not 0 <= prompt_chars <= MAX_PROMPT_CHARS:
        return None
    if hashes and set(map(type, hashes)) != {int}:  # one C-level pass (bool is a type of its own)
        return None
    return Pick(sender, plugin, block_size, endpoint, hashes, prompt_chars)


def parse_peer(entry: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port)."""
    host, sep, port = entry.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PickSharingError(f"--pick-sharing-peers: {entry!r} is not HOST:PORT")
    return host, int(port)


async def resolve(host: str, port: int) -> list[str]:
    """The host's IPv4/IPv6 addresses (a headless Service: one per ready pod)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _zmq_address(address: str, port: int) -> str:
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


class PickSharing:
    """Publishes this replica's picks and applies the other replicas' (a ``build.Background``)."""

    def __init__(self, scorers: Mapping[str, PrefixCacheScorer], *, bind_host: str, port: int,
                 peers: Iterable[str] = (), registry: CollectorRegistry | None = None,
                 resolver: Callable[[str, int], Any] = resolve, resolve_interval_s: float = RESOLVE_INTERVAL_S,
                 producers: Mapping[str, InflightLoadProducer] | None = None,
                 known_endpoint: Callable[[str], bool] = lambda _: True,
                 poll_interval_s: float = POLL_INTERVAL_S) -> None:
        """``producers``: scorer name -> the pick-time accounting that reads that scorer's index
        (``inflight-load-producer``); a peer's pick on that scorer also counts as load there.
        ``known_endpoint``: whether an ``ip:port`` is in this EPP's pool (a pick for another is
        dropped, so that the index holds no endpoint this EPP cannot pick)."""
        self.scorers = dict(scorers)
        self.producers = dict(producers or {})
        self.known_endpoint = known_endpoint
        self.bind_host = bind_host
        self.port = port
        self.peers = [parse_peer(p) for p in peers]
        self.sender = os.urandom(8)
        self.resolver = resolver
        self.resolve_interval_s = resolve_interval_s
        self.poll_interval_s = poll_interval_s
        self.connected: set[str] = set()  # zmq addresses the SUB socket is connected to
        self._resolved: dict[tuple[str, int], set[str]] = {}  # peer -> its zmq addresses, last resolved
        self._ctx: zmq.asyncio.Context | None = None
        self._pub: zmq.asyncio.Socket | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._sub_now: zmq.Socket[bytes] | None = None  # the same socket, read without waiting (drain)
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = Counter("infergate_epp_pick_sharing_sent", "Picks this EPP published to its peers "
                            "(pick sharing), including those the socket dropped.", registry=registry)
        self.received = Counter("infergate_epp_pick_sharing_received", "Messages from peer EPPs (pick sharing), "
                                "by what became of them: applied to the prefix index, own (this EPP's), "
                                "mismatch (another plugin name or block size), unknown_endpoint (not in "
                                "this EPP's pool), malformed.", ["result"],
                                registry=registry)
        self._received = {result: self.received.labels(result)
                          for result in ("applied", "own", "mismatch", "unknown_endpoint", "malformed")}

    # ---- lifecycle (build.Background) ------------------------------------------------------
    async def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._pub.bind(_zmq_address("*" if self.bind_host in ("0.0.0.0", "::", "") else self.bind_host, self.port))
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
        self._sub.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        self._sub_now = zmq.Socket.shadow(self._sub.underlying)
        for name, scorer in self.scorers.items():
            scorer.on_indexed = self._publisher(name, scorer.block_size)
            scorer.before_read = self.drain
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive(), name="pick sharing: receive")]
        if self.peers:
            await self.refresh_peers()
            self._tasks.append(loop.create_task(self._resolve_loop(), name="pick sharing: peers"))
        log.info("pick sharing: publishing on port %d for %s; peers %s", self.port, ", ".join(self.scorers),
                 ", ".join(f"{h}:{p}" for h, p in self.peers) or "(none)")

    async def stop(self) -> None:
        for scorer in self.scorers.values():
            scorer.on_indexed = None
            scorer.before_read = None
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._sub = self._sub_now = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ---- publishing ------------------------------------------------------------------------
    def _publisher(self, plugin: str, block_size: int) -> Callable[[list[int], str, int], None]:
        def publish(hashes: list[int], endpoint: str, prompt_chars: int) -> None:
            if self._pub is None or not hashes:
                return
            frames = encode(Pick(self.sender, plugin, block_size, endpoint, hashes[:MAX_HASHES], prompt_chars))
            with contextlib.suppress(zmq.Again):  # PUB never blocks; a full queue drops
                self._pub.send_multipart(frames, flags=zmq.NOBLOCK)
            self.sent.inc()
        return publish

    # ---- receiving -------------------------------------------------------------------------
    def apply(self, frames: Sequence[bytes]) -> str:
        """Apply one message to the prefix index; what became of it (the counter's label)."""
        pick = decode(frames)
        if pick is None:
            result = "malformed"
        elif pick.sender == self.sender:
            result = "own"
        else:
            scorer = self.scorers.get(pick.plugin)
            if scorer is None or scorer.block_size != pick.block_size:
                result = "mismatch"
            elif not self.known_endpoint(pick.endpoint):
                result = "unknown_endpoint"
            else:
                held = scorer.indexer.add(pick.hashes, pick.endpoint)  # the leading blocks it held until now
                producer = self.producers.get(pick.plugin)
                if producer is not None:
                    producer.note_peer_pick(pick.endpoint, pick.prompt_chars, held)
                result = "applied"
        self._received[result].inc()
        return result

    def drain(self) -> int:
        """Apply the peers' messages already queued on the socket (at most :data:`MAX_DRAIN`), without
        waiting: called before each match, so a pick another replica made a moment ago is in the
        index even if the event loop has not turned to the socket yet. How many were applied."""
        sock = self._sub_now
        if sock is None:
            return 0
        count = 0
        while count < MAX_DRAIN:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:
                log.warning("pick sharing: receive failed: %s", exc)
                break
            self.apply(frames)
            count += 1
        return count

    async def _receive(self) -> None:
        """Drain the socket every :data:`POLL_INTERVAL_S` (what no match drained first). Not a wake-up
        per message: awaiting each one cost 250-350 us of process CPU per pick, against ~50 us
        to decode and apply it."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            for _ in range(MAX_DRAIN_ROUNDS):
                if self.drain() < MAX_DRAIN:
                    break

    # ---- peers -----------------------------------------------------------------------------
    async def refresh_peers(self) -> None:
        """Connect to every address the peers resolve to now; disconnect those gone."""
        if self._sub is None:
            return
        for peer in self.peers:
            host, port = peer
            try:
                self._resolved[peer] = {_zmq_address(a, port) for a in await self.resolver(host, port)}
            except OSError as exc:  # a name that does not resolve (now): keep its last addresses
                log.warning("pick sharing: cannot resolve peer %s: %s", host, exc)
        self._connect()

    def set_pod_peers(self, addresses: Iterable[str]) -> None:
        """The peer pods' addresses now (``PodPeers``), at this EPP's port."""
        self._resolved[("pods", self.port)] = {_zmq_address(a, self.port) for a in addresses}
        self._connect()

    def _connect(self) -> None:
        if self._sub is None:
            return
        wanted = set().union(*self._resolved.values())
        for address in sorted(wanted - self.connected):
            self._sub.connect(address)
        for address in sorted(self.connected - wanted):
            with contextlib.suppress(zmq.ZMQError):
                self._sub.disconnect(address)
        self.connected = wanted

    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resolve_interval_s)
            try:
                await self.refresh_peers()
            except Exception:  # keep sharing with the peers known so far
                log.exception("pick sharing: refreshing the peers failed")


def prefix_scorers(plugins: Mapping[str, object]) -> dict[str, PrefixCacheScorer]:
    """The config's prefix-cache scorers (approximate index, precise scorer's fallback included), by name."""
    return {name: plugin for name, plugin in plugins.items() if isinstance(plugin, PrefixCacheScorer)}


def load_producers(plugins: Mapping[str, object], scorers: Mapping[str, PrefixCacheScorer]) -> dict[str, InflightLoadProducer]:
    """scorer name -> the ``inflight-load-producer`` that reads its index (the first, if several do)."""
    out: dict[str, InflightLoadProducer] = {}
    for plugin in plugins.values():
        if isinstance(plugin, InflightLoadProducer) and plugin.prefix is not None:
            name = next((n for n, s in scorers.items() if s is plugin.prefix), None)
            if name is not None:
                out.setdefault(name, plugin)
    return out


def parse_selector(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (equality only, as ``kubectl -l``) -> {k: v}."""
    selector: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip().lstrip("=")
        if not sep or not key or "!" in key:
            raise PickSharingError(f"--pick-sharing-peer-pods: {part!r} is not LABEL=VALUE")
        selector[key] = value
    if not selector:
        raise PickSharingError("--pick-sharing-peer-pods: an empty selector")
    return selector


class PodPeers:
    """The pods of the pool's namespace that ``selector`` matches, from the EPP's pod watch
    (``KubernetesEventHandler``): each with an IP and not being deleted is a peer, ready or not
    (a starting replica's picks count as soon as it serves). Tells ``sharing`` on every change."""

    def __init__(self, selector: Mapping[str, str], sharing: PickSharing) -> None:
        self.selector = dict(selector)
        self.sharing = sharing
        self._ips: dict[str, str] = {}  # pod name -> IP

    def _peer_ip(self, pod: Mapping[str, Any]) -> str | None:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("deletionTimestamp") or any(labels.get(k) != v for k, v in self.selector.items()):
            return None
        ip = (pod.get("status") or {}).get("podIP")
        return str(ip) if ip else None

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        ips = {}
        for pod in pods:
            ip = self._peer_ip(pod)
            if ip is not None:
                ips[str((pod.get("metadata") or {}).get("name", ""))] = ip
        self._update(ips)

    def event(self, kind: str, pod: Mapping[str, Any]) -> None:
        name = str((pod.get("metadata") or {}).get("name", ""))
        ips = dict(self._ips)
        ip = None if kind == "DELETED" else self._peer_ip(pod)
        if ip is None:
            ips.pop(name, None)
        else:
            ips[name] = ip
        self._update(ips)

    def _update(self, ips: dict[str, str]) -> None:
        if ips != self._ips:
            self._ips = ips
            self.sharing.set_pod_peers(ips.values())

    @property
    def addresses(self) -> set[str]:
        return set(self._ips.values())
