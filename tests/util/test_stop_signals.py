"""util.signals.run_until_stopped: SIGTERM and SIGINT stop a command's coroutine the same way, its
cleanup runs, and nothing (a blocked worker thread, a cleanup that hangs) delays the exit beyond
the bound."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infergate.util.signals import DaemonThreadExecutor, Stopped, run_until_stopped

SRC = Path(__file__).resolve().parents[2] / "src"


def send_soon(sig: signal.Signals, delay: float = 0.05) -> None:
    asyncio.get_running_loop().call_later(delay, os.kill, os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_either_signal_cancels_the_coroutine_and_runs_its_cleanup(sig: signal.Signals) -> None:
    steps: list[str] = []
    said: list[signal.Signals] = []

    async def main() -> None:
        send_soon(sig)
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.01)  # cleanup may await
            steps.append("cleaned up")

    started = time.monotonic()
    with pytest.raises(Stopped) as stopped:
        run_until_stopped(main(), on_signal=said.append)
    assert time.monotonic() - started < 15  # not the 30 s sleep (generous: CI machines are loaded)
    assert stopped.value.signal == sig and stopped.value.finished
    assert stopped.value.exit_code == 128 + int(sig)
    assert steps == ["cleaned up"] and said == [sig]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are gone again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_worker_thread_blocked_in_a_call_does_not_delay_the_return() -> None:
    release = threading.Event()
    recorded: list[str] = []

    async def main() -> None:
        send_soon(signal.SIGTERM, 0.2)
        try:
            await asyncio.to_thread(release.wait, 60)  # a cluster or helm call that hangs
        except asyncio.CancelledError:
            recorded.append(await asyncio.to_thread(lambda: "interruption recorded"))  # other workers still serve
            raise

    started = time.monotonic()
    try:
        with pytest.raises(Stopped) as stopped:
            run_until_stopped(main(), grace=5)
        assert time.monotonic() - started < 15  # not the worker's 60 s
    finally:
        release.set()
    assert stopped.value.finished and recorded == ["interruption recorded"]


def test_a_cleanup_that_hangs_is_abandoned_after_the_grace_period() -> None:
    async def main() -> None:
        send_soon(signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.shield(asyncio.sleep(30))  # ignores the cancellation

    started = time.monotonic()
    with pytest.raises(Stopped) as stopped:
        run_until_stopped(main(), grace=0.5)
    assert 0.4 < time.monotonic() - started < 15  # the grace, not the 30 s cleanup
    assert not stopped.value.finished


def test_a_second_signal_stops_waiting_for_the_cleanup() -> None:
    async def main() -> None:
        send_soon(signal.SIGTERM, 0.05)
        send_soon(signal.SIGTERM, 0.3)
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.shield(asyncio.sleep(30))

    started = time.monotonic()
    with pytest.raises(Stopped) as stopped:
        run_until_stopped(main(), grace=20)
    assert time.monotonic() - started < 15 and not stopped.value.finished  # not the 20 s grace


def test_a_coroutine_that_handles_the_stop_returns_its_result_and_no_signal_is_a_plain_run() -> None:
    async def handles() -> str:
        send_soon(signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "stopped cleanly"
        return "not stopped"

    assert run_until_stopped(handles()) == "stopped cleanly"

    async def fails() -> None:
        raise ValueError("bad option")

    with pytest.raises(ValueError, match="bad option"):
        run_until_stopped(fails())
    assert run_until_stopped(asyncio.sleep(0, "done")) == "done"


def test_the_process_exits_at_once_on_sigterm_though_a_worker_thread_is_blocked() -> None:
    """What ``asyncio.run`` does not do: it joins the worker at shutdown (and the interpreter again at exit)."""
    code = (
        "import asyncio, time, sys\n"
        "from infergate.util.signals import Stopped, run_until_stopped\n"
        "async def main():\n"
        "    try:\n"
        "        await asyncio.gather(asyncio.to_thread(time.sleep, 60), asyncio.to_thread(print, 'ready', flush=True))\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n"
        "try:\n"
        "    run_until_stopped(main())\n"
        "except Stopped as stop:\n"
        "    print(stop, flush=True)\n"
        "    sys.exit(stop.exit_code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert time.monotonic() - started < 15, out  # not the worker's 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert out.split("\n")[:2] == ["cleaned up", "stopped by SIGTERM"], out


def test_the_executor_runs_calls_on_reused_daemon_threads_and_passes_errors_back() -> None:
    executor = DaemonThreadExecutor(max_workers=2)
    try:
        assert [executor.submit(pow, 2, n).result(5) for n in range(10)] == [2 ** n for n in range(10)]
        assert len(executor._workers) == 1 and executor._workers[0].daemon  # one idle worker took each call
        gate = threading.Event()
        blocked = [executor.submit(gate.wait, 10) for _ in range(3)]  # more than max_workers at once
        time.sleep(0.1)
        assert len(executor._workers) == 2 and not blocked[2].running()
        gate.set()
        assert all(f.result(5) for f in blocked)
        with pytest.raises(ZeroDivisionError):
            executor.submit(lambda: 1 / 0).result(5)
    finally:
        executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(print)
