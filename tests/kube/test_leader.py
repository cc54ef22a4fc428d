"""Lease-based leader election (infergate.kube.leader) against the embedded API server: one of
two candidates leads; a leader that stops gives the Lease back and the other takes over; a
leader that goes silent is replaced after the lease duration; a given-back Lease is taken at
once (the candidates watch it); a leader that cannot renew steps
down before its Lease could be taken; a Lease taken by another identity ends leadership."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig, load_config
from infergate.kube.leader import LeaderElector
from infergate.kube.lease import LeaseView
from infergate.util.wait import async_wait_until

# short timings so that each scenario takes about a second; their ratios are client-go's defaults'
FAST = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.1}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EmbeddedAPIServer]:
    async with EmbeddedAPIServer(tmp_path / "state") as server:
        yield server


@pytest.fixture
def config(api: EmbeddedAPIServer) -> KubeConfig:
    return load_config(api.kubeconfig_path)


@pytest.fixture
async def client(config: KubeConfig) -> AsyncIterator[KubeClient]:
    async with KubeClient(config) as c:
        yield c


@pytest.fixture
async def namespace(client: KubeClient) -> str:
    name = f"le-{uuid.uuid4().hex[:6]}"
    await client.create(kinds.NAMESPACES.path(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


class Cuttable:
    """A TCP forwarder to the API server that can be cut (open connections reset, new ones
    refused): a leader behind it can no longer reach the API server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def sever(self) -> None:
        self.cut = True
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Candidate:
    """An elector with its own client, its task and a record of its callbacks."""

    def __init__(self, config: KubeConfig, namespace: str, identity: str, **timings: float) -> None:
        self.client = KubeClient(config, request_timeout=2.0)
        self.events: list[str] = []
        t = timings or FAST
        self.elector = LeaderElector(self.client, namespace, "lease", identity, t["lease_duration"],
                                     t["renew_deadline"], t["retry_period"], on_started_leading=lambda: self.events.append("started"),
                                     on_stopped_leading=self._stopped)
        self.task: asyncio.Task[None] | None = None

    async def _stopped(self) -> None:  # an async callback is awaited
        await asyncio.sleep(0)
        self.events.append("stopped")

    async def start(self) -> Candidate:
        await self.client.open()
        self.task = asyncio.create_task(self.elector.run())
        return self

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 15)  # release (2 s) + the watch, on a loaded machine
        await self.client.close()


@pytest.fixture
async def candidates(config: KubeConfig, namespace: str) -> AsyncIterator[Callable[..., Any]]:
    made: list[Candidate] = []

    async def make(identity: str, cfg: KubeConfig | None = None, **timings: float) -> Candidate:
        candidate = Candidate(cfg or config, namespace, identity, **timings)
        made.append(candidate)
        return await candidate.start()

    yield make
    for candidate in made:
        await candidate.stop()


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    await async_wait_until(check, timeout=timeout, interval=0.02, what=what)


async def lease(client: KubeClient, namespace: str) -> dict[str, Any]:
    obj = await client.get(kinds.LEASES.path(namespace, "lease"))
    assert obj is not None
    return obj


async def test_one_of_two_candidates_leads_and_the_lease_says_so(candidates: Any, client: KubeClient,
                                                                   namespace: str) -> None:
    a, b = await candidates("a"), await candidates("b")
    await until(lambda: a.elector.is_leader or b.elector.is_leader, "a leader")
    await asyncio.sleep(0.5)  # several retry periods: the other must not lead meanwhile
    assert [a.elector.is_leader, b.elector.is_leader].count(True) == 1
    leader = a if a.elector.is_leader else b
    assert leader.elector.leading.is_set() and leader.events == ["started"]
    spec = (await lease(client, namespace))["spec"]
    assert spec["holderIdentity"] == leader.elector.identity
    assert spec["leaseDurationSeconds"] == 2  # 1.5 s rounded up to whole seconds
    assert spec["acquireTime"] and spec["renewTime"]
    first_renewal = spec["renewTime"]
    await asyncio.sleep(0.3)
    assert (await lease(client, namespace))["spec"]["renewTime"] > first_renewal  # renewed while leading


async def test_a_stopped_leader_gives_the_lease_back_and_the_other_takes_over(candidates: Any, client: KubeClient,
                                                                               namespace: str) -> None:
    slow = {"lease_duration": 3.0, "renew_deadline": 1.0, "retry_period": 0.1}  # expiry far from hand-over
    a = await candidates("a", **slow)
    await until(lambda: a.elector.is_leader, "a leads")
    b = await candidates("b", **slow)
    await asyncio.sleep(0.3)
    assert not b.elector.is_leader
    transitions = LeaseView.of(await lease(client, namespace)).transitions
    started = time.monotonic()
    await a.stop()
    assert a.events == ["started", "stopped"] and not a.elector.is_leader
    await until(lambda: b.elector.is_leader, "b takes over", timeout=slow["lease_duration"])
    # given back, not expired: taken on b's next read, well before the lease duration
    assert time.monotonic() - started < slow["lease_duration"]
    view = LeaseView.of(await lease(client, namespace))
    assert view.holder == "b" and view.transitions == transitions + 1


async def test_a_silent_leader_is_replaced_after_the_lease_duration_and_steps_down_itself(
        candidates: Any, config: KubeConfig, api: EmbeddedAPIServer, client: KubeClient, namespace: str) -> None:
    link = Cuttable(api.port)
    await link.start()
    try:
        # a wide gap between renew deadline and lease duration: the ordering below holds on a loaded machine
        slow = {"lease_duration": 3.0, "renew_deadline": 1.0, "retry_period": 0.1}
        a = await candidates("a", dataclasses.replace(config, server=f"https://127.0.0.1:{link.port}"), **slow)
        await until(lambda: a.elector.is_leader, "a leads")
        b = await candidates("b", **slow)
        await asyncio.sleep(0.3)
        cut_at = time.monotonic()
        link.sever()  # a can no longer renew (nor give the Lease back)
        await until(lambda: not a.elector.is_leader, "a steps down", timeout=5)
        stepped_down = time.monotonic() - cut_at
        await until(lambda: b.elector.is_leader, "b takes over", timeout=5)
        took_over = time.monotonic() - cut_at
        # a stops leading by its renew deadline, before b may take the Lease (after the lease
        # duration without a change, as b observed it): never two leaders
        assert stepped_down < took_over
        assert took_over >= slow["lease_duration"] - 1.0  # not before the Lease lapsed (renewals are 0.1 s apart)
        assert a.events == ["started", "stopped"] and b.events == ["started"]
        assert LeaseView.of(await lease(client, namespace)).holder == "b"
    finally:
        await link.close()


async def test_a_leader_that_finds_the_lease_taken_steps_down(candidates: Any, client: KubeClient,
                                                             namespace: str) -> None:
    a = await candidates("a")
    await until(lambda: a.elector.is_leader, "a leads")
    current = await lease(client, namespace)
    current["spec"]["holderIdentity"] = "someone-else"
    await client.replace(kinds.LEASES.path(namespace, "lease"), current)
    await until(lambda: not a.elector.is_leader, "a steps down", timeout=3)
    # the elector stops leading first, then awaits the callback: give it its turn (it raced the
    # assertion once in a full run: ['started'])
    await until(lambda: len(a.events) == 2, "a's on_stopped_leading", timeout=3)
    assert a.events == ["started", "stopped"]


async def test_timings_are_checked() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(None, "ns", "lease", "me", lease_duration=5, renew_deadline=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(None, "ns", "lease", "")  # type: ignore[arg-type]


async def test_a_given_back_lease_is_taken_at_the_change_not_at_the_next_poll(candidates: Any) -> None:
    slow_polls = {"lease_duration": 6.0, "renew_deadline": 4.0, "retry_period": 2.0}
    a = await candidates("a", **slow_polls)
    await until(lambda: a.elector.is_leader, "a leads")
    b = await candidates("b", **slow_polls)
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await a.stop()
    await until(lambda: b.elector.is_leader, "b takes over", timeout=5)
    # b polls every 2 to 2.4 s; the watch on the Lease wakes it when a gives the Lease back
    assert time.monotonic() - started < 1.0
