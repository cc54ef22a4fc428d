"""One `migrate run` per namespace at a time (a coordination.k8s.io Lease, issue 17 defect 2) and
Ctrl-C recorded as `interrupted` with the step and how to resume (defect 3), on the embedded
API server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from infergate.kube.kinds import LEASES
from infergate.migrate.discover import plan_from_cluster
from infergate.migrate.lock import LEASE_NAME, LockHeld, MigrationLock
from infergate.migrate.plan import Gates, PlanOptions
from infergate.migrate.resources import CONFIGMAPS, HTTPROUTES
from infergate.migrate.runner import Migrator, RunOptions
from infergate.migrate.state import StateStore
from infergate.util.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


def run(migrate: Any, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "3", "--analysis-delay", "0", *args)
    return result.returncode, json.loads(result.stdout)


def holder(cluster: Any, ns: str) -> str:
    lease = cluster.get(LEASES, ns, LEASE_NAME)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def test_a_run_while_another_holds_the_lease_is_refused_naming_the_holder(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    route_before = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]
    MigrationLock(cluster, ns, identity="ci-runner-7/4242").acquire()
    code, report = run(migrate, ns, "--probes", "0")
    assert code == 6, report
    assert report["phase"] == "refused"
    assert "ci-runner-7/4242" in report["message"] and f"namespace {ns}" in report["message"], report["message"]
    assert cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route") is None  # nothing started
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == route_before
    rollback = migrate("rollback", "-n", ns, "--route", "llm-route")
    assert rollback.returncode == 6 and "ci-runner-7/4242" in rollback.stdout, rollback.stdout


def test_two_runs_at_once_one_runs_and_the_other_is_refused(
        cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(path="zero-downtime", gates=Gates(probes=0)))

    async def both() -> list[Any]:
        runs = [Migrator(cluster, None, RunOptions(lock_identity=f"run-{i}/1", ready_timeout_s=10, poll_s=0.1,
                                                   gateway_url="http://127.0.0.1:9", analysis_delay_s=0))
                .run(plan) for i in (1, 2)]
        return list(await asyncio.gather(*runs))

    results = asyncio.run(both())
    codes = sorted(r.exit_code for r in results)
    assert codes == [4, 6], [(r.exit_code, r.message) for r in results]  # one paused at analyse-0, one refused
    refused = next(r for r in results if r.exit_code == 6)
    assert "run-1/1" in refused.message or "run-2/1" in refused.message
    assert holder(cluster, ns) == ""  # the finished run gave the Lease back


def test_only_one_of_two_racing_acquirers_gets_the_lease(cluster: Any, namespace: str) -> None:
    outcomes: dict[str, str] = {}
    start = threading.Barrier(4)

    def take(name: str) -> None:
        start.wait()
        try:
            MigrationLock(cluster, namespace, identity=name).acquire()
            outcomes[name] = "held"
        except LockHeld as exc:
            outcomes[name] = f"refused by {exc.holder}"

    threads = [threading.Thread(target=take, args=(f"racer-{i}/1",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [n for n, o in outcomes.items() if o == "held"]
    assert len(winners) == 1, outcomes
    assert holder(cluster, namespace) == winners[0]
    assert all(o == f"refused by {winners[0]}" for n, o in outcomes.items() if n != winners[0]), outcomes


def test_a_stale_lease_expires_and_a_held_one_is_renewed(cluster: Any, namespace: str) -> None:
    MigrationLock(cluster, namespace, identity="killed/9", duration_s=1).acquire()
    with pytest.raises(LockHeld):
        MigrationLock(cluster, namespace, identity="next/1").acquire()
    time.sleep(1.3)  # killed/9 renews no more
    mine = MigrationLock(cluster, namespace, identity="next/1", duration_s=1)
    mine.acquire()
    lease = cluster.get(LEASES, namespace, LEASE_NAME)
    assert lease["spec"]["holderIdentity"] == "next/1" and lease["spec"]["leaseTransitions"] == 1
    for _ in range(3):  # renewed, it stays held past its duration
        time.sleep(0.5)
        assert mine.renew()
    with pytest.raises(LockHeld, match="next/1"):
        MigrationLock(cluster, namespace, identity="third/1").acquire()
    mine.release()
    assert holder(cluster, namespace) == ""
    assert not mine.renew()


def test_a_cancelled_run_records_interrupted_with_its_step_and_status_says_how_to_resume(
        migrate: Any, cluster: Any, preview_stack: str) -> None:
    ns = preview_stack  # no status writer: the GA EPP never becomes ready, wait-ready waits
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(path="zero-downtime", gates=Gates(probes=0)))

    async def interrupt() -> None:
        task = asyncio.create_task(Migrator(cluster, None, RunOptions(ready_timeout_s=60, poll_s=0.1)).run(plan))
        store = StateStore(cluster)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = await asyncio.to_thread(store.load, ns, "llm-route")
            if state is not None and state.done("apply-objectives"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        task.cancel()  # what asyncio.run does on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    state = StateStore(cluster).load(ns, "llm-route")
    assert state is not None and state.phase == "interrupted"
    assert state.interrupted_during == "wait-ready"
    assert holder(cluster, ns) == ""  # the Lease was given back
    status = migrate("status", "-n", ns, "--route", "llm-route")
    assert "phase interrupted" in status.stdout
    assert "interrupted during wait-ready" in status.stdout and "infergate migrate run -n" in status.stdout


# Once `exclusive`: under a loaded parallel `make test` a SIGINT here twice lost the interruption
# (stop 13). The recording has had a bounded time since (util.signals.run_until_stopped, and the
# test below); with 4 CPU-bound processes beside it on 2 cores it passed 4 runs of 4, so it runs
# in the parallel pass
def test_ctrl_c_on_the_command_line_prints_how_to_resume(
        apiserver: Any, cluster: Any, preview_stack: str, helm_bin: str, status_writers: Any) -> None:
    ns = preview_stack
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-c", "from infergate.cli.migrate import command; command()", "run", "-n", ns,
            "--kubeconfig", str(apiserver.kubeconfig_path), "--helm", helm_bin, "--probes", "0",
            "--ready-timeout", "60"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = StateStore(cluster)
        wait_until(lambda: (s := store.load(ns, "llm-route")) is not None and s.done("apply-objectives"), 60,
                   interval=0.1, what="the run to reach wait-ready")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        # bounded, but not tight: in one parallel `make test` the exit took over 30 s (the step's
        # worker thread, a cluster or helm call on a loaded machine, is waited for at shutdown;
        # not diagnosed further, see the closing note of stop 13); alone it exits in under a second
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted during wait-ready" in stderr, stderr
    assert f"infergate migrate run -n {ns} --route llm-route" in stderr, stderr
    assert StateStore(cluster).load(ns, "llm-route").phase == "interrupted"  # type: ignore[union-attr]
    # and it resumes from there once the EPP is ready
    status_writers(ns)
    again = subprocess.run([*argv[:-2], "--ready-timeout", "10", "--gateway-url", "http://127.0.0.1:9", "-o", "json"],
                           env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(again.stdout)
    assert again.returncode == 4, report  # paused at analyse-0 (no traffic), after resuming
    assert {s["step"]: s["status"] for s in report["steps"]}["apply-objectives"] == "done earlier"


def test_an_interruption_not_recorded_in_time_is_said_with_the_step_it_stopped_in(
        cluster: Any, preview_stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, `run` then said "interrupted: the state is recorded (phase interrupted ...": no step, and
    wrong (the message of the Ctrl-C test's failure under load). The recording has a bounded time
    (util.signals.run_until_stopped): past it, or if it failed, the message says so and where."""
    from infergate.cli.migrate import _report_interrupted  # the message of `migrate run` on Ctrl-C/SIGTERM
    from infergate.migrate.state import MigrationState

    ns = preview_stack
    plan = plan_from_cluster(cluster, ns, None, PlanOptions(path="zero-downtime", gates=Gates(probes=0)))
    state = MigrationState(plan)
    for step in plan.steps[:[s.id for s in plan.steps].index("wait-ready")]:
        state = state.complete(step.id)
    StateStore(cluster).save(state)  # as the run left it: running, in wait-ready
    _report_interrupted(cluster, ns, "llm-route", False)
    said = capsys.readouterr().err
    assert said.startswith("interrupted during wait-ready: the interruption was not recorded (the state says "
                           "phase running; the steps done are; see `infergate migrate status"), said
    assert f"infergate migrate run -n {ns} --route llm-route" in said, said
    StateStore(cluster).save(state.transition("interrupted", "interrupted during wait-ready", during="wait-ready"))
    _report_interrupted(cluster, ns, "llm-route", False)
    said = capsys.readouterr().err
    assert said.startswith("interrupted during wait-ready: the state is recorded (phase interrupted; see "), said
