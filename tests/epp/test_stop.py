"""The EPP stops in bounded time: each stop step is bounded (a step that cannot finish, e.g.
waiting for a peer that is gone, is cancelled and the other steps still run), in-flight
ext_proc streams still get their grace, and the `infergate epp` process ends within
``shutdown_grace + STOP_MARGIN_S`` of the stop signal even when its event loop is blocked
(stacks of every thread on stderr first). Before: a stop step that never finished held the
EPP until the pod's SIGKILL (10 s under `infergate up`), with nothing in its log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from tests.support.cancel import cancel_as_it_completes

from infergate.epp import runner as runner_module
from infergate.epp.build import EppParts, build_epp
from infergate.epp.runner import STOP_CANCEL_S, EPPOptions, EPPRunner, bounded_stop


def static_options(tmp_path: Path, **extra: Any) -> EPPOptions:
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump({
        "pool": {"name": "pool", "targetPorts": [8000]},
        "endpoints": [{"name": "pod-0", "address": "127.0.0.1", "port": 8000, "ready": True}],
    }))
    return EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0, metrics_port=0,
                      static_file=str(pool_file), **extra)


async def test_a_step_that_never_finishes_is_cancelled_at_its_bound() -> None:
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def waits_for_a_peer_that_is_gone() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    assert await bounded_stop("a step", waits_for_a_peer_that_is_gone, 0.2) is False
    assert 0.2 <= time.monotonic() - started < 0.2 + STOP_CANCEL_S + 0.5
    assert cancelled.is_set()

    async def fails() -> None:
        raise RuntimeError("boom")

    assert await bounded_stop("a failing step", fails, 1.0) is True  # logged, not raised


class _Stuck:
    """A background part whose stop waits for something that never comes (a peer that is gone)."""

    def __init__(self) -> None:
        self.stop_cancelled = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stop_cancelled = True
            raise


async def test_the_runner_stop_is_bounded_when_a_step_hangs_and_the_other_steps_still_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = _Stuck()

    def build_with_a_stuck_part(options: EPPOptions) -> EppParts:
        parts = build_epp(options)
        parts.background.insert(0, stuck)  # stopped last but one: after the servers and the scraper
        return parts

    monkeypatch.setattr(runner_module, "build_epp", build_with_a_stuck_part)
    monkeypatch.setattr(runner_module, "STOP_STEP_S", 0.3)
    step = 0.3
    runner = EPPRunner(static_options(tmp_path, shutdown_grace=0.1))
    await runner.start()
    assert runner.grpc_server and runner.metrics_server and runner.parts
    scraper = runner.parts.scraper
    started = time.monotonic()
    await asyncio.wait_for(runner.stop(), 10.0)  # before: never returned
    took = time.monotonic() - started
    assert step <= took < step + STOP_CANCEL_S + 1.5, took
    assert stuck.stop_cancelled
    assert not scraper.scraping()  # the other steps ran: the scraper stopped too
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name() == "pool source")


async def test_an_in_flight_ext_proc_stream_still_gets_its_grace(tmp_path: Path) -> None:
    grace = 0.6
    runner = EPPRunner(static_options(tmp_path, shutdown_grace=grace))
    await runner.start()
    assert runner.grpc_server is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.grpc_server.port}") as channel:
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(
            headers=[core_pb.HeaderValue(key=":path", raw_value=b"/v1/completions")]))))
        await asyncio.sleep(0.2)  # the stream is open: headers sent, the body not yet
        started = time.monotonic()
        await asyncio.wait_for(runner.stop(), 5)
        took = time.monotonic() - started
        assert grace * 0.8 <= took < grace + 1.5, took  # waited for the stream's grace, then went on
        with pytest.raises(grpc.aio.AioRpcError):
            await asyncio.wait_for(call.read(), 5)


def test_the_process_ends_at_its_exit_deadline_even_with_a_blocked_event_loop() -> None:
    code = ("import asyncio, time\n"
            "from infergate.epp.runner import arm_exit_deadline\n"
            "async def main():\n"
            "    assert arm_exit_deadline(0.3)\n"
            "    time.sleep(30)  # the loop's thread blocked (e.g. a join in a C extension)\n"
            "asyncio.run(main())\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert time.monotonic() - started < 10
    assert result.returncode == 1, result
    assert "time.sleep(30)" in result.stderr or "line 5 in main" in result.stderr, result.stderr


# Python 3.11's asyncio.wait_for returns the inner result and drops a cancel that arrives in the
# same loop iteration as the inner completion; a loop around it then outlives its task's cancel.
# That is how the EPP's stop hung (MetricsScraper.stop waited for a scrape loop that had dropped
# its cancel: the connection to a simulator stopping at the same moment completed with it).


async def test_a_watch_loop_cancelled_as_it_is_woken_stops() -> None:
    from infergate.kube.client import KubeClient
    from infergate.kube.config import KubeConfig
    from infergate.kube.watch import ListWatch

    watch = ListWatch(KubeClient(KubeConfig(server="https://127.0.0.1:1")), "/api/v1/pods",
                      on_list=lambda items: None, on_event=lambda kind, obj: None)
    task = asyncio.ensure_future(watch._sleep_unless_woken(10.0))
    await asyncio.sleep(0.05)
    assert await cancel_as_it_completes(task, watch.wake)  # before: the sleep returned, the loop went on


async def test_a_leader_election_cancelled_as_the_lease_changes_stops() -> None:
    from infergate.kube.client import KubeClient
    from infergate.kube.config import KubeConfig
    from infergate.kube.leader import LeaderElector

    async with KubeClient(KubeConfig(server="http://127.0.0.1:1")) as client:  # refused: every attempt fails
        elector = LeaderElector(client, "default", "lease", "me", lease_duration=30, renew_deadline=20,
                                retry_period=10)
        task = asyncio.ensure_future(elector._acquire())
        await asyncio.sleep(0.3)  # the first attempt failed; it waits for a change of the Lease
        assert await cancel_as_it_completes(task, elector._changed.set)  # before: it campaigned on
