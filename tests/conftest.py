"""Fixtures shared by every test package.

Tests that need ``../shared`` (upstream CRDs, conformance manifests, the seed document)
use the ``shared_dir`` fixture: it fails with a clear message when the folder is absent,
because a silent skip would hide a gap in what CI checks.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infergate.util.clitool import find_tool

from .support.ports import share_for_worker

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("INFERGATE_SHARED_DIR", REPO_ROOT.parent / "shared"))


def pytest_configure(config: pytest.Config) -> None:
    """Cache bytecode (``__pycache__``, gitignored) even where the environment sets
    PYTHONDONTWRITEBYTECODE=1: otherwise every process of a test run compiles again all it imports.
    The pytest workers rewrote and compiled the ~350 test modules at each collection (10 s of a
    collection's 13 s), and each of the hundreds of `python -m infergate` processes the e2e tests
    start (`infergate up`, its gateway and pods, the CLI) compiled infergate's modules (~0.4 s of
    CPU per start). Set here, before collection and before any worker or subprocess starts."""
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    config.stash[_THREADS_AT_START] = {t.ident for t in threading.enumerate()}
    _share_the_port_range(config)
    _share_httpx_default_verify_context()


def _share_the_port_range(config: pytest.Config) -> None:
    """Each xdist worker, and the processes its tests start, pick free ports from a share of their own
    (tests/support/ports.py)."""
    share_for_worker(getattr(config, "workerinput", None), os.environ)


def _share_httpx_default_verify_context() -> None:
    """Tests create many short-lived httpx clients (``httpx.get`` in a poll, a client per check),
    and httpx builds a verification context for each: ~40 ms of CPU loading certifi's CA bundle
    (81 of them in tests/migrate/test_bake.py alone). The product passes its one shared
    context (``infergate.util.tls.default_verify_context``); here httpx's default ``verify=True``
    gets that same context. Any other ``verify`` or ``cert`` builds its own, as before."""
    from httpx._transports import default as transports

    from infergate.util.tls import default_verify_context

    build = transports.create_ssl_context

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is True and cert is None and trust_env:
            return default_verify_context()
        return build(verify=verify, cert=cert, trust_env=trust_env)

    transports.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_THREADS_AT_START = pytest.StashKey[set[int | None]]()
_EXIT_STATUS = pytest.StashKey[int]()
# how long a test's non-daemon thread may outlive the session before the process exits without it
LEFTOVER_THREAD_GRACE_S = 15.0


# how long a non-daemon thread that a test's body started may outlive the test's teardown
TEST_THREAD_GRACE_S = 5.0
_CALL_THREADS = pytest.StashKey[list[threading.Thread]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """Note the non-daemon threads the test's body starts (fixtures' threads start in setup)."""
    before = {t.ident for t in threading.enumerate()}
    try:
        return (yield)
    finally:
        item.stash[_CALL_THREADS] = [t for t in threading.enumerate()
                                     if not t.daemon and t.is_alive() and t.ident not in before]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """A non-daemon thread that the test's body started and that outlives its teardown by
    ``TEST_THREAD_GRACE_S`` is an error of that test, with the thread's stack: in an xdist worker
    the end-of-session check below can only end the worker, unreported."""
    result = yield
    started = item.stash.get(_CALL_THREADS, [])
    alive = _left_running(lambda: started, TEST_THREAD_GRACE_S) if started else []
    if alive:
        pytest.fail(_thread_stacks(alive, f"left running by the test {TEST_THREAD_GRACE_S:g} s after its teardown "
                                          "(start it as a daemon, and stop it in a finally)"), pytrace=False)
    return result


_POOL_WORKER_FILE = os.path.join("concurrent", "futures", "thread.py")


def _left_running(candidates: Callable[[], list[threading.Thread]], grace_s: float) -> list[threading.Thread]:
    """The threads of ``candidates()`` that still run after up to ``grace_s`` (:func:`_running`)."""
    deadline = time.monotonic() + grace_s
    while (threads := _running(candidates())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return threads


def _running(threads: list[threading.Thread]) -> list[threading.Thread]:
    """The threads that would hold the process at exit: alive, less idle thread-pool workers. An
    executor's worker waiting for work (an event loop's default executor, kept by a loop that
    outlives the test) ends at exit, when concurrent.futures wakes its workers; one running a task
    is counted."""
    frames = sys._current_frames()

    def idle_pool_worker(thread: threading.Thread) -> bool:
        frame = frames.get(thread.ident) if thread.ident is not None else None
        return (frame is not None and frame.f_code.co_name == "_worker"
                and frame.f_code.co_filename.endswith(_POOL_WORKER_FILE))

    return [t for t in threads if t.is_alive() and not idle_pool_worker(t)]


def _thread_stacks(threads: list[threading.Thread], what: str) -> str:
    frames = sys._current_frames()
    lines = [f"{len(threads)} non-daemon thread(s) {what}:"]
    for thread in threads:
        lines.append(f"--- {thread.name}")
        frame = frames.get(thread.ident) if thread.ident is not None else None
        lines.extend(traceback.format_stack(frame) if frame is not None else ["(no frame)"])
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A test that fails between starting a non-daemon thread and stopping it leaves the thread
    running, and Python waits for it at exit: the run hangs until CI's own timeout (stop 27 lost
    90 minutes so). Give such threads a grace period, then print their stacks and exit with a
    failing status, so that the leak is a visible failure, not a hang. (In an xdist worker the exit
    ends the worker after it reported its tests: xdist shows neither the stacks nor the status;
    the test that started the thread is reported by ``pytest_runtest_teardown`` above.)"""
    started = config.stash.get(_THREADS_AT_START, set())
    threads = _left_running(lambda: [t for t in threading.enumerate() if not t.daemon and t.ident not in started
                                     and t is not threading.current_thread()], LEFTOVER_THREAD_GRACE_S)
    if not threads:
        return
    sys.stderr.write("\n" + _thread_stacks(threads, f"left running by the tests after {LEFTOVER_THREAD_GRACE_S:g} s; "
                                          "exiting without waiting for them") + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(config.stash.get(_EXIT_STATUS, 0) or 1)


def xdist_groups(item: pytest.Item) -> list[str]:
    """The names of an item's ``xdist_group`` marks (its own, its class's, its module's); for an
    item without one that uses a module-scoped fixture of the tests (a module's API server,
    cluster, `infergate up`), its module: so the module's tests run on one worker and the
    fixture starts once per run, not once per worker."""
    named = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    if named:
        return sorted(named)
    definitions = getattr(item, "_fixtureinfo", None)  # pytest's record of the item's fixtures
    for defs in (definitions.name2fixturedefs.values() if definitions is not None else ()):
        # a plugin's fixture (pytest-asyncio's module event loop) has an empty baseid: not ours
        if defs and defs[-1].scope == "module" and defs[-1].baseid:
            return [f"module:{item.nodeid.split('::', 1)[0]}"]
    return []


def _require_exclusive_marks_by_name(items: list[pytest.Item]) -> None:
    """`make test`'s exclusive pass collects only the files whose text names the mark (the
    Makefile's EXCLUSIVE_FILES greps for ``mark.exclusive``): a test marked another way would run
    in neither pass. The parallel pass collects every file, so it catches one here."""
    texts: dict[Path, str] = {}
    for item in items:
        if item.get_closest_marker("exclusive") is None:
            continue
        path = item.path
        if "mark.exclusive" not in texts.setdefault(path, path.read_text()):
            raise pytest.UsageError(f"{item.nodeid} is marked exclusive, but its file never says `mark.exclusive`: "
                                    "the Makefile's exclusive pass would not collect it (name the mark in the file)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` keep each group (see ``xdist_groups``) on one worker under pytest 9.2.

    pytest-xdist 3.8 tags a grouped test in each worker by assigning ``item._nodeid`` (the id
    plus ``@group``), which its scheduler then keeps on one worker; pytest 9.2 derives
    ``nodeid`` from ``item._id`` instead, so the tag was lost: every group was spread over both
    workers and each of their module fixtures (a cluster, `infergate up`, Envoy) started on each.
    This sets the tag where pytest reads it (a no-op where xdist's own tag shows)."""
    _require_exclusive_marks_by_name(items)
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers under --dist loadgroup
        return
    from _pytest.nodeid import NodeId  # pytest's own type of item ids; no public setter exists

    for item in items:
        groups = xdist_groups(item)
        if groups and "@" not in item.nodeid.rsplit("]", 1)[-1]:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")  # type: ignore[attr-defined]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        pytest.fail(
            f"this test needs {what} at {path} (the workplace's shared/ folder beside the "
            f"repository, or set INFERGATE_SHARED_DIR); it is absent",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require_dir(SHARED_DIR, "../shared")


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return _require_dir(shared_dir / "reference", "../shared/reference (upstream CRDs and conformance)")


@pytest.fixture(scope="session")
def seed_dir(shared_dir: Path) -> Path:
    return _require_dir(shared_dir / "seed", "../shared/seed (the source document)")


def _require_binary(name: str) -> str:
    found = find_tool(name)
    if found is None:
        pytest.fail(f"the {name} binary is missing: run `make tools` (make test installs it)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    return _require_binary("kubectl")


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return _require_binary("helm")


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    from infergate.dataplane.binary import envoy_binary

    return envoy_binary()
