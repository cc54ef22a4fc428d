"""The migration shares its event loop with the downtime monitor (and, in the end-to-end tests, with
the load): a slow cluster or helm call must not stall that loop, or the monitor measures the
migration's own pauses as downtime (issue 11, finding 6).

A distant API server or a slow chart pull is stood in for by a wrapper that delays calls of the
real cluster (the embedded API server) or the real helm binary by blocking their thread, as a
synchronous client waiting on the network does, and records every call made on the event loop's
own thread (there, any call stalls the loop, however fast the server). The delay applies to the
first call from each call site in the code: a site that blocks the loop (a call made in a
coroutine, or a coroutine waiting on a thread's call) does so from its first call. Delaying every
call (36 of them for the cluster, one after the other) made the test take 22 s for the same
sites.

A coroutine waiting on a thread's call is seen directly: while a delayed call sleeps on a worker
thread, the wrapper samples the loop thread's stack every 50 ms, and a loop thread inside a
blocking wait (``Future.result``, ``threading`` waits and joins) is recorded with the site. The
largest gap between the ticks of a coroutine on the loop is only reported: on 2 cores shared with
the rest of the suite, a starved loop once went 0.59 s without a tick with no call blocking it."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from infergate.migrate.cluster import ClusterTarget, KubeCluster
from infergate.migrate.discover import plan_from_cluster
from infergate.migrate.helm import Helm
from infergate.migrate.plan import STEP_TYPES, Gates, PlanOptions
from infergate.migrate.resources import PREVIEW_POOLS
from infergate.migrate.runner import STEP_HANDLERS, Migrator, RunOptions

from ..support.clitool import CliTool

TESTDATA = Path(__file__).resolve().parent / "testdata"
CHARTS = TESTDATA / "charts"
DELAY_S = 0.6  # each cluster/helm call blocks its thread this long
SAMPLE_S = 0.05  # how often a delayed call looks at the loop thread's stack
TICK_S = 0.02  # the concurrent coroutine's interval (the downtime monitor's is 0.1 s)
# the innermost frames of a thread blocked until another thread's work is done
BLOCKING_WAITS = {("threading.py", "wait"), ("threading.py", "join"), ("threading.py", "_wait_for_tstate_lock"),
                  ("_base.py", "result"), ("_base.py", "wait")}
T = TypeVar("T")


def on_the_loop_thread() -> bool:
    """Whether the caller runs on a thread whose event loop is running (a coroutine's thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Slow:
    """``inner`` (a cluster or a Helm) whose method calls block for ``delay_s``, the first call from
    each call site (file and line of the caller); ``on_loop``: the calls made on the loop's thread."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self._inner = inner
        self._delay_s = delay_s
        self.calls = 0
        self.sites: set[tuple[str, int]] = set()
        self.on_loop: list[str] = []
        self.loop_thread = threading.get_ident()  # made on the test's loop
        self.loop_waited: list[str] = []  # delayed calls the loop thread sat waiting for

    def _sleep_watching_the_loop(self, what: str) -> None:
        deadline = time.monotonic() + self._delay_s
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(SAMPLE_S, left))
            frame = sys._current_frames().get(self.loop_thread)
            if frame is not None and (Path(frame.f_code.co_filename).name, frame.f_code.co_name) in BLOCKING_WAITS:
                self.loop_waited.append(f"{what}: the loop thread waited in {frame.f_code.co_name} "
                                        f"({frame.f_code.co_filename}:{frame.f_lineno})")
                return

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            caller = sys._getframe(1)
            site = (caller.f_code.co_filename, caller.f_code.co_firstlineno)  # the calling function
            if on_the_loop_thread():
                self.on_loop.append(f"{name} from {site[0]}:{site[1]}")
            if site not in self.sites:
                self.sites.add(site)
                if on_the_loop_thread():
                    time.sleep(self._delay_s)
                else:
                    self._sleep_watching_the_loop(f"{name} from {site[0]}:{site[1]}")
            return attr(*args, **kwargs)

        return slow


async def with_ticker(work: Callable[[], Awaitable[T]]) -> tuple[T, float, int]:
    """Run ``work`` while a coroutine on the same loop ticks every TICK_S; the result, the largest
    gap between two ticks and the number of ticks."""
    ticks = [time.monotonic()]

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK_S)

    ticker = asyncio.create_task(tick())
    try:
        result = await work()
    finally:
        ticker.cancel()
    ticks.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return result, max(gaps), len(ticks)


async def test_slow_cluster_calls_do_not_stall_the_loop(cluster: KubeCluster, preview_stack: str,
                                                       status_writer: Any) -> None:
    ns = preview_stack
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(path="zero-downtime", gates=Gates(probes=0)))
    slow = Slow(cluster, DELAY_S)
    options = RunOptions(stop_after="wait-ready", ready_timeout_s=20.0, poll_s=0.1,
                         gateway_url="http://127.0.0.1:9")
    result, gap, ticks = await with_ticker(lambda: Migrator(slow, None, options).run(plan))
    assert result.exit_code == 0, (result.message, result.steps)
    assert [s["step"] for s in result.steps][-1] == "wait-ready"
    assert slow.calls >= 5 and len(slow.sites) >= 5, (slow.calls, slow.sites)
    assert slow.on_loop == [], f"cluster calls made on the event loop's thread: {slow.on_loop}"
    assert slow.loop_waited == [], (slow.loop_waited, f"largest gap between ticks {gap:.2f} s ({len(slow.sites)} of "
                                                      f"{slow.calls} calls delayed {DELAY_S} s, {ticks} ticks)")


async def test_slow_helm_calls_do_not_stall_the_loop(cluster: KubeCluster, helm: CliTool, namespace: str,
                                                    kubectl: CliTool, helm_bin: str, apiserver: Any,
                                                    status_writers: Any) -> None:
    ns = namespace
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    status_writers(ns)
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(
        path="simple", chart=str(CHARTS / "inferencepool-v1"), chart_version=None, gates=Gates(probes=0)))
    assert plan.pools[0].install == "helm" and plan.pools[0].preview_release == "llama-preview"
    slow = Slow(Helm(helm_bin, ClusterTarget(str(apiserver.kubeconfig_path))), DELAY_S)
    options = RunOptions(stop_after="remove-preview", ready_timeout_s=20.0, poll_s=0.1)
    result, gap, ticks = await with_ticker(lambda: Migrator(cluster, slow, options).run(plan))  # type: ignore[arg-type]
    assert result.exit_code == 0, (result.message, result.steps)
    assert "helm uninstall llama-preview" in result.steps[-1]["detail"]
    assert cluster.get(PREVIEW_POOLS, ns, "llama-preview") is None
    assert slow.calls >= 4 and len(slow.sites) >= 2, (slow.calls, slow.sites)
    assert slow.on_loop == [], f"helm calls made on the event loop's thread: {slow.on_loop}"
    assert slow.loop_waited == [], (slow.loop_waited, f"largest gap between ticks {gap:.2f} s ({len(slow.sites)} of "
                                                      f"{slow.calls} helm calls delayed {DELAY_S} s, {ticks} ticks)")


def test_every_step_kind_of_the_plan_has_a_handler() -> None:
    assert set(STEP_HANDLERS) == set(STEP_TYPES.values())
