"""Loops of the local runtime stop when their task is cancelled as the thing they await completes.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the
same loop iteration as the inner completion; a loop around it then outlives its task's cancel, and
whoever awaits that task on stop hangs. These tests complete the awaited thing and cancel the task in
the same iteration (the technique of tests/epp/test_stop.py); all failed with ``wait_for``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.support.cancel import cancel_as_it_completes

from infergate.apiserver.runtime import process as process_module
from infergate.apiserver.runtime.forwarder import TcpForwarder, _Activity
from infergate.apiserver.runtime.process import PodProcess
from infergate.apiserver.runtime.service_proxy import ServiceProxy, ServiceProxyOptions
from infergate.apiserver.runtime.spec import LaunchSpec, Probe
from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig


class _Sink:
    """The writing side of a connection, enough for ``TcpForwarder._pipe``."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        return None

    def close(self) -> None:
        return None


async def test_a_forwarded_copy_cancelled_as_data_arrives_stops() -> None:
    forwarder = TcpForwarder("127.0.0.1", 1)
    source = asyncio.StreamReader()
    sink = _Sink()
    task = asyncio.ensure_future(forwarder._pipe(source, sink, _Activity()))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    # before: the read returned the data, the copy went on reading (stop() waited for it)
    assert await cancel_as_it_completes(task, lambda: source.feed_data(b"x"))


async def test_the_service_proxy_loop_cancelled_as_something_changes_stops() -> None:
    async with KubeClient(KubeConfig(server="http://127.0.0.1:1")) as client:
        proxy = ServiceProxy(client, ServiceProxyOptions(bind_retry_s=10.0))
        proxy.bind_errors[("127.0.0.1", 1)] = "address in use"  # it waits for a change or the retry
        task = asyncio.ensure_future(proxy._loop())
        await asyncio.sleep(0.05)
        assert await cancel_as_it_completes(task, proxy._changed.set)  # before: the loop went on


async def test_a_probe_attempt_cancelled_as_the_probe_answers_stops(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def run_probe(probe: Probe, host: str, session: Any) -> bool:
        return await answer

    monkeypatch.setattr(process_module, "run_probe", run_probe)
    probe = Probe(kind="tcp", port=1)
    spec = LaunchSpec(argv=(), env={}, probe=probe, grace_period_s=1.0)
    pod = PodProcess("default/p", "127.0.0.1", spec, {}, tmp_path / "log", on_change=lambda p: None)
    task = asyncio.ensure_future(pod._attempt(probe, None))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    # before: the attempt returned False and the probe loop calling it went on probing
    assert await cancel_as_it_completes(task, lambda: answer.set_result(False))
