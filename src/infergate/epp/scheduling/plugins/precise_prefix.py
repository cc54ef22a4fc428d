"""``precise-prefix-cache-scorer``: prefix scores from the model servers' own KV events.

Upstream's plugin of this name (llm-d) subscribes to vLLM's KV events and scores each endpoint
by the longest run of the request's blocks that the endpoint really holds. Here:

- **Subscriptions** follow the pool: the EPP's director hands the plugin its ``Datastore``
  (``attach_datastore``); the plugin subscribes to ``tcp://<pod ip>:<kvEventsConfig.port>``
  (and replays from ``kvEventsConfig.replayPort`` when set) for every endpoint, on every
  datastore change, and stops the subscriptions of endpoints that left. Without a datastore
  (a scheduler used on its own) endpoints are picked up from the candidates as they are seen.
- **Index**: one ``EndpointBlockIndex`` per endpoint (block hashes stored and not removed), with
  its reliability (see ``infergate.kvevents.index``).
- **Hashing the request**: the block hashes a model server would compute for the prompt. For
  ``infergate sim`` that is ``infergate.sim.tokenizer.block_hashes`` over the rendered prompt
  (a completion's ``prompt``; a chat's messages rendered with the simulator's chat template;
  token-id prompts through ``block_hashes_of_ids``), seeded by the target model (or adapter)
  name, in blocks of the size the endpoint's events report (``tokenProcessorConfig.blockSize``
  until an event arrives). A real vLLM hashes token ids with its own tokenizer and seed, which
  this plugin does not reproduce: against vLLM it always falls back (see verification).
- **Verification**: an endpoint's events are used once its index has held the first block of
  some request as hashed here (64-bit hashes do not match by chance), which shows that the
  model server hashes blocks the way this plugin does; a real vLLM never passes, so it is
  always scored by the fallback.
- **Score**: for an endpoint with a reliable and verified index, matched blocks / prompt
  blocks; for any other endpoint, the approximate prefix score of the
  embedded ``prefix-cache-scorer`` (its parameters ``hashBlockSize``,
  ``maxPrefixBlocksToMatch``, ``lruCapacityPerServer`` are accepted here too), whose index is
  updated after every pick as usual.
- ``speculativeIndexing`` (upstream's option, default false): after a pick the request's blocks
  count as held by the chosen endpoint for ``speculativeTTL`` (default 2s), until its events
  confirm them, so that a burst of requests with one new prefix does not spread before the
  first one's events arrive.

Parameters (upstream names): ``tokenProcessorConfig.blockSize`` (16),
``kvEventsConfig.topicFilter`` ("kv@"), ``kvEventsConfig.concurrency`` (4; accepted for
compatibility: events are applied in order on the EPP's event loop), ``kvEventsConfig.discoverPods``
(true; false, one bound socket that all pods connect to, is not supported), and infergate's
``kvEventsConfig.port`` (5557, vLLM's default) and ``kvEventsConfig.replayPort`` (none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import zmq.asyncio

from infergate.epp.datastore import Datastore, Endpoint
from infergate.epp.scheduling.framework import (
    Candidate,
    ConfigError,
    CycleState,
    PluginHandle,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins.params import check_keys, float_param, int_param
from infergate.epp.scheduling.plugins.prefix import (
    DEFAULT_HASH_BLOCK_SIZE,
    DEFAULT_LRU_CAPACITY_PER_SERVER,
    DEFAULT_MAX_PREFIX_BLOCKS,
    PrefixCacheScorer,
)
from infergate.kvevents import EndpointBlockIndex, KvEventSubscriber
from infergate.sim import tokenizer  # the simulator's block hashing, which the EPP reproduces
from infergate.util.durations import DurationError, parse_go_duration

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 16
DEFAULT_EVENTS_PORT = 5557
DEFAULT_TOPIC_FILTER = "kv@"
DEFAULT_CONCURRENCY = 4
DEFAULT_SPECULATIVE_TTL_S = 2.0


@runtime_checkable
class DatastoreAware(Protocol):
    """A plugin that follows the pool's endpoints: the director attaches the datastore, the
    EPP's shutdown calls ``aclose``."""

    def attach_datastore(self, datastore: Datastore) -> None: ...

    async def aclose(self) -> None: ...


def _mapping(params: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    value = params.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f".{key}: must be an object")
    try:
        check_keys(value, allowed)
    except ConfigError as exc:
        raise ConfigError(f".{key}{exc}") from None
    return value


def _nested(key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f".{key}{exc}") from None


def request_text_and_ids(request: SchedulingRequest) -> tuple[str | None, list[int] | None]:
    """What the simulator hashes for this request: rendered text, or token ids."""
    body = request.body
    if body is None:
        return request.prompt, None
    messages = body.get("messages")
    if isinstance(messages, list):
        return tokenizer.render_chat(messages), None
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return None, prompt
    return request.prompt, None


class _Subscription:
    __slots__ = ("endpoints", "index", "subscriber", "verified")

    def __init__(self, subscriber: KvEventSubscriber, index: EndpointBlockIndex) -> None:
        self.subscriber = subscriber
        self.index = index
        self.endpoints: set[str] = set()
        # the events have held a block hashed as this EPP hashes requests (a 64-bit hash does not
        # match by chance); until then a model server that hashes otherwise (a real vLLM) could
        # not be told from one that holds nothing, so its score is the approximate one
        self.verified = False


class PreciseState:
    """Per-cycle state: the request's block hashes by block size."""

    __slots__ = ("hashes", "namespace", "text", "token_ids")

    def __init__(self, text: str | None, token_ids: list[int] | None, namespace: str) -> None:
        self.text = text
        self.token_ids = token_ids
        self.namespace = namespace
        self.hashes: dict[int, list[int]] = {}

    def for_block_size(self, block_size: int) -> list[int]:
        hashes = self.hashes.get(block_size)
        if hashes is None:
            if self.token_ids is not None:
                hashes = tokenizer.block_hashes_of_ids(self.token_ids, block_size, self.namespace)
            else:
                hashes = tokenizer.block_hashes(self.text or "", block_size, self.namespace)
            self.hashes[block_size] = hashes
        return hashes


class PrecisePrefixCacheScorer(PrefixCacheScorer):
    type_name = "precise-prefix-cache-scorer"
    STATE_KEY = "precise-prefix-cache-scorer/approximate"  # the embedded approximate scorer's entry
    PRECISE_STATE_KEY = "precise-prefix-cache-scorer"

    def __init__(self, name: str, *, block_size: int = DEFAULT_BLOCK_SIZE, events_port: int = DEFAULT_EVENTS_PORT,
                 replay_port: int | None = None, topic_filter: str = DEFAULT_TOPIC_FILTER,
                 concurrency: int = DEFAULT_CONCURRENCY, speculative: bool = False,
                 speculative_ttl_s: float = DEFAULT_SPECULATIVE_TTL_S,
                 hash_block_size: int = DEFAULT_HASH_BLOCK_SIZE, max_blocks: int = DEFAULT_MAX_PREFIX_BLOCKS,
                 lru_capacity: int = DEFAULT_LRU_CAPACITY_PER_SERVER) -> None:
        super().__init__(name, hash_block_size, max_blocks, lru_capacity)
        self.kv_block_size = block_size  # tokens per KV block until events tell (block_size: the approximate's)
        self.events_port = events_port
        self.replay_port = replay_port
        self.topic_filter = topic_filter
        self.concurrency = concurrency
        self.speculative = speculative
        self.speculative_ttl_s = speculative_ttl_s
        self.exact_scores = 0  # endpoint scores taken from events
        self.fallback_scores = 0  # endpoint scores taken from the approximate index
        self._datastore: Datastore | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False
        self._synced_version = -1
        self._by_url: dict[str, _Subscription] = {}
        self._by_hostport: dict[str, _Subscription] = {}
        self._speculative: dict[str, dict[int, float]] = {}  # hostport -> block hash -> expiry
        self._stopping: set[asyncio.Task[None]] = set()
        self._ctx: zmq.asyncio.Context | None = None

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> PrecisePrefixCacheScorer:
        check_keys(params, ("tokenProcessorConfig", "kvEventsConfig", "speculativeIndexing", "speculativeTTL",
                            "hashBlockSize", "maxPrefixBlocksToMatch", "lruCapacityPerServer"))
        tokens = _mapping(params, "tokenProcessorConfig", ("blockSize",))
        events = _mapping(params, "kvEventsConfig", ("topicFilter", "concurrency", "discoverPods", "port",
                                                      "replayPort"))
        block_size = _nested("tokenProcessorConfig", int_param, tokens, "blockSize", DEFAULT_BLOCK_SIZE, minimum=1)
        topic_filter = events.get("topicFilter", DEFAULT_TOPIC_FILTER)
        if not isinstance(topic_filter, str):
            raise ConfigError(f".kvEventsConfig.topicFilter: must be a string, got {topic_filter!r}")
        concurrency = _nested("kvEventsConfig", int_param, events, "concurrency", DEFAULT_CONCURRENCY, minimum=1)
        discover = events.get("discoverPods", True)
        if not isinstance(discover, bool):
            raise ConfigError(f".kvEventsConfig.discoverPods: must be a boolean, got {discover!r}")
        if not discover:
            raise ConfigError(".kvEventsConfig.discoverPods: false (pods connecting to one socket bound by the EPP) "
                              "is not supported; use true (the EPP subscribes to every pod)")
        port = _nested("kvEventsConfig", int_param, events, "port", DEFAULT_EVENTS_PORT, minimum=1)
        replay = events.get("replayPort")
        if replay is not None:
            replay = _nested("kvEventsConfig", int_param, events, "replayPort", 0, minimum=1)
        for key, value in (("port", port), ("replayPort", replay)):
            if value is not None and value > 65535:
                raise ConfigError(f".kvEventsConfig.{key}: must be a port (1-65535), got {value}")
        speculative = params.get("speculativeIndexing", False)
        if not isinstance(speculative, bool):
            raise ConfigError(f".speculativeIndexing: must be a boolean, got {speculative!r}")
        ttl_raw = params.get("speculativeTTL", DEFAULT_SPECULATIVE_TTL_S)
        if isinstance(ttl_raw, str):
            try:
                ttl = parse_go_duration(ttl_raw)
            except DurationError as exc:
                raise ConfigError(f".speculativeTTL: {exc}") from None
        else:
            ttl = float_param(params, "speculativeTTL", DEFAULT_SPECULATIVE_TTL_S, low=0.0)
        if ttl <= 0:
            raise ConfigError(f".speculativeTTL: must be positive, got {ttl_raw!r}")
        return cls(
            name, block_size=block_size, events_port=port, replay_port=replay, topic_filter=topic_filter,
            concurrency=concurrency, speculative=speculative, speculative_ttl_s=ttl,
            hash_block_size=int_param(params, "hashBlockSize", DEFAULT_HASH_BLOCK_SIZE, nonpositive_default=True),
            max_blocks=int_param(params, "maxPrefixBlocksToMatch", DEFAULT_MAX_PREFIX_BLOCKS, nonpositive_default=True),
            lru_capacity=int_param(params, "lruCapacityPerServer", DEFAULT_LRU_CAPACITY_PER_SERVER,
                                   nonpositive_default=True),
        )

    # ---- endpoints and subscriptions --------------------------------------------------------
    def attach_datastore(self, datastore: Datastore) -> None:
        """Follow ``datastore``'s endpoints (called by the director; listeners run on the loop)."""
        if self._closed:
            return
        self._datastore = datastore
        self._unsubscribe = datastore.subscribe(self._on_datastore_change)
        self._on_datastore_change()

    def _on_datastore_change(self) -> None:
        datastore = self._datastore
        if datastore is None or datastore.version == self._synced_version:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first scoring on the loop syncs
        self._synced_version = datastore.version
        self._sync(datastore.endpoints(), remove=True)

    def events_url(self, endpoint: Endpoint) -> tuple[str, str | None]:
        host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
        replay = f"tcp://{host}:{self.replay_port}" if self.replay_port else None
        return f"tcp://{host}:{self.events_port}", replay

    def _sync(self, endpoints: tuple[Endpoint, ...] | list[Endpoint], *, remove: bool) -> None:
        wanted: dict[str, Endpoint] = {e.hostport: e for e in endpoints}
        if remove:
            for hostport in [h for h in self._by_hostport if h not in wanted]:
                self._forget(hostport)
        for hostport, endpoint in wanted.items():
            if hostport in self._by_hostport:
                continue
            url, replay = self.events_url(endpoint)
            sub = self._by_url.get(url)
            if sub is None:
                if self._ctx is None:
                    self._ctx = zmq.asyncio.Context()
                index = EndpointBlockIndex()
                subscriber = KvEventSubscriber(url, index, replay_endpoint=replay, topic_filter=self.topic_filter,
                                               context=self._ctx)
                subscriber.start()
                sub = self._by_url[url] = _Subscription(subscriber, index)
            sub.endpoints.add(hostport)
            self._by_hostport[hostport] = sub

    def _forget(self, hostport: str) -> None:
        sub = self._by_hostport.pop(hostport, None)
        self._speculative.pop(hostport, None)
        if sub is None:
            return
        sub.endpoints.discard(hostport)
        if not sub.endpoints:
            self._by_url.pop(sub.subscriber.endpoint, None)
            task = asyncio.get_running_loop().create_task(sub.subscriber.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def index_of(self, hostport: str) -> EndpointBlockIndex | None:
        sub = self._by_hostport.get(hostport)
        return None if sub is None else sub.index

    def describe(self) -> dict[str, dict[str, object]]:
        """Per endpoint: its events endpoint, connection and index state (reliability, counters)."""
        return {h: {"events": s.subscriber.endpoint, "connected": s.subscriber.connected, "verified": s.verified,
                    **s.index.describe()}
                for h, s in self._by_hostport.items()}

    def subscribed(self) -> dict[str, str]:
        """hostport -> events endpoint, for every endpoint followed now."""
        return {h: s.subscriber.endpoint for h, s in self._by_hostport.items()}

    async def aclose(self) -> None:
        """Stop every subscription (the EPP's shutdown; idempotent)."""
        self._closed = True
        self._datastore = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        subs = list(self._by_url.values())
        self._by_url.clear()
        self._by_hostport.clear()
        for sub in subs:
            await sub.subscriber.stop()
        for task in list(self._stopping):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ---- scoring ----------------------------------------------------------------------------
    def _ensure_following(self, candidates: list[Candidate]) -> None:
        if self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # scheduling outside an event loop (offline tools): approximate only
        if self._datastore is not None:
            self._on_datastore_change()
        else:
            self._sync([c.endpoint for c in candidates], remove=False)

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        self._ensure_following(candidates)
        text, ids = request_text_and_ids(request)
        cycle = PreciseState(text, ids, request.target_model)
        state[self.PRECISE_STATE_KEY] = cycle
        approx: list[float] | None = None
        now = time.monotonic()
        scores: list[float] = []
        for i, c in enumerate(candidates):
            sub = self._by_hostport.get(c.hostport)
            index = None if sub is None else sub.index
            hashes: list[int] = []
            if sub is not None and index is not None and index.reliable:
                hashes = cycle.for_block_size(index.block_size or self.kv_block_size)
                if not sub.verified and hashes and hashes[0] in index.blocks:
                    sub.verified = True  # its events name the blocks as this EPP hashes them
            if sub is None or index is None or not index.reliable or not sub.verified:
                if approx is None:
                    approx = super().score(state, request, candidates)
                scores.append(approx[i])
                self.fallback_scores += 1
                continue
            scores.append(self._matched(c.hostport, index, hashes, now) / len(hashes) if hashes else 0.0)
            self.exact_scores += 1
        return scores

    def _matched(self, hostport: str, index: EndpointBlockIndex, hashes: list[int], now: float) -> int:
        blocks = index.blocks
        guessed = self._speculative.get(hostport) if self.speculative else None
        n = 0
        for h in hashes:
            if h in blocks:
                n += 1
                continue
            if guessed is not None:
                expiry = guessed.get(h)
                if expiry is not None and expiry > now:
                    n += 1
                    continue
            break
        return n

    def pre_request(self, state: CycleState, request: SchedulingRequest, result: SchedulingResult) -> None:
        super().pre_request(state, request, result)  # the approximate index (fallback) and its hit ratio
        target = result.primary.targets[0].hostport
        cycle = state.get(self.PRECISE_STATE_KEY)
        sub = self._by_hostport.get(target)
        if not isinstance(cycle, PreciseState) or sub is None or not sub.index.reliable or not sub.verified:
            return
        index = sub.index
        hashes = cycle.for_block_size(index.block_size or self.kv_block_size)
        now = time.monotonic()
        if hashes:
            self.last_hit_ratio = self._matched(target, index, hashes, now) / len(hashes)
        if self.speculative and hashes:
            guessed = self._speculative.setdefault(target, {})
            if len(guessed) > 4 * len(hashes) + 1024:  # drop expired guesses now and then
                for h in [h for h, t in guessed.items() if t <= now]:
                    del guessed[h]
            expiry = now + self.speculative_ttl_s
            for h in hashes:
                guessed[h] = expiry
