"""Issue 13's properties of the embedded API server under a crash, each with a test of its own:

* durability: 8 concurrent writers, with conflicts (optimistic concurrency, some 409s), against
  ``infergate apiserver`` as a process, killed with SIGKILL mid-run and restarted on the same
  state directory: every acknowledged write (201/200 received) is there with its value, and
  what was not acknowledged is either absent or whole, never corrupt;
* watch resume: a watch from a resourceVersion taken before the crash gets exactly the events
  after it, across the restart; from a compacted resourceVersion it gets 410 ``Expired``, and
  a list then gives a resourceVersion to watch from again.

Small counts (seconds of writing, not a load test).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.util.net import free_port

pytestmark = pytest.mark.e2e

WRITERS = 8
SHARED = ("shared-a", "shared-b")  # every writer updates both: conflicts
RUN_BEFORE_KILL = 1.5  # seconds of writing before SIGKILL


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    token: str
    ca: Path

    def client(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)),
                            timeout=timeout, headers={"Authorization": f"Bearer {self.token}"})


def _start(state: Path, port: int) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "infergate", "apiserver", "--state-dir", str(state),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # printed once the server listens
    if not line.startswith("export KUBECONFIG="):
        proc.kill()
        raise AssertionError(f"infergate apiserver did not start: {line!r} {proc.communicate(timeout=15)[1]}")
    return Server(proc, f"https://127.0.0.1:{port}", (state / "token").read_text().strip(), state / "tls.crt")


def _kill(server: Server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.communicate(timeout=15)


@contextmanager
def running(state: Path, port: int) -> Iterator[Server]:
    server = _start(state, port)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            _kill(server)


def _ns(client: httpx.Client, name: str) -> None:
    response = client.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert response.status_code == 201, response.text


# ----------------------------------------------------------------- durability

@dataclass
class WriterLog:
    created: dict[str, str] = field(default_factory=dict)  # acknowledged creations: name -> value
    attempted: dict[str, str] = field(default_factory=dict)  # every creation sent: name -> value
    updated: dict[str, int] = field(default_factory=dict)  # shared object -> last acknowledged counter
    conflicts: int = 0
    errors: int = 0


def _writer(server: Server, index: int, log: WriterLog, stop: threading.Event) -> None:
    """Alternately create an object of its own and update its key in a shared object (GET, then
    PUT with the read resourceVersion: a 409 when another writer got there first, then retry)."""
    base = "/api/v1/namespaces/dur/configmaps"
    counters = dict.fromkeys(SHARED, 0)
    n = 0
    with server.client() as client:
        while not stop.is_set():
            try:
                name = f"w{index}-{n}"
                value = f"{index}:{n}:" + "v" * (n % 50)
                log.attempted[name] = value
                if client.post(base, json={"metadata": {"name": name}, "data": {"v": value}}).status_code == 201:
                    log.created[name] = value
                n += 1
                shared = SHARED[n % len(SHARED)]
                current = client.get(f"{base}/{shared}").json()
                counters[shared] += 1
                current["data"] = {**(current.get("data") or {}), f"w{index}": str(counters[shared])}
                put = client.put(f"{base}/{shared}", json=current)
                if put.status_code == 200:
                    log.updated[shared] = counters[shared]
                elif put.status_code == 409:
                    log.conflicts += 1
                    counters[shared] -= 1  # not written: the next try writes the same counter
                else:
                    log.errors += 1
            except (httpx.TransportError, json.JSONDecodeError, KeyError):
                if stop.is_set():
                    return
                log.errors += 1  # the server is gone: the write in flight is unacknowledged
                time.sleep(0.05)


def test_acknowledged_writes_of_8_concurrent_writers_survive_sigkill(tmp_path: Path) -> None:
    state, port = tmp_path / "state", free_port()
    with running(state, port) as server:
        with server.client() as client:
            _ns(client, "dur")
            for shared in SHARED:
                assert client.post("/api/v1/namespaces/dur/configmaps",
                                   json={"metadata": {"name": shared}, "data": {}}).status_code == 201
        logs = [WriterLog() for _ in range(WRITERS)]
        stop = threading.Event()
        threads = [threading.Thread(target=_writer, args=(server, i, logs[i], stop), daemon=True)
                   for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(RUN_BEFORE_KILL)
        _kill(server)  # mid-run: every writer has a request in flight or about to be sent
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads)
    with sqlite3.connect(state / "state.db") as db:  # the crash left a consistent database
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        max_rv_before = int(db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()[0])

    acknowledged = sum(len(log.created) + len(log.updated) for log in logs)
    assert acknowledged >= WRITERS, "the writers wrote too little to test anything"
    assert sum(log.conflicts for log in logs) > 0, "no conflicts: the writers did not contend"

    with running(state, port) as server, server.client() as client:
        listed = client.get("/api/v1/namespaces/dur/configmaps")
        assert listed.status_code == 200
        stored = {item["metadata"]["name"]: item for item in listed.json()["items"]}
        for i, log in enumerate(logs):
            for name, value in log.created.items():  # every acknowledged creation, with its value
                assert name in stored, f"writer {i}: acknowledged {name} lost"
                assert stored[name]["data"] == {"v": value}
            for shared, counter in log.updated.items():  # at least the acknowledged value (one in flight may follow)
                kept = int(stored[shared]["data"][f"w{i}"])
                assert counter <= kept <= counter + 1, (i, shared, counter, kept)
        attempted = {name: value for log in logs for name, value in log.attempted.items()}
        for name, obj in stored.items():  # nothing unacknowledged is partial: absent or whole
            if name in SHARED:
                assert all(v.isdigit() for v in obj["data"].values()), obj
                continue
            assert obj["data"] == {"v": attempted[name]}, obj
        after = client.post("/api/v1/namespaces/dur/configmaps", json={"metadata": {"name": "after"}})
        assert after.status_code == 201
        assert int(after.json()["metadata"]["resourceVersion"]) > max_rv_before  # versions never reused


# ----------------------------------------------------------------- watch resume

def _watch(client: httpx.Client, path: str, rv: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The first ``count`` events of a watch from ``rv`` (or fewer, if the watch ends first)."""
    events: list[dict[str, Any]] = []
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": str(int(timeout))}
    with client.stream("GET", path, params=params, timeout=timeout + 5) as response:
        if response.status_code != 200:
            response.read()
            return [{"type": "HTTP", "object": response.json()}]
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                if len(events) >= count:
                    break
    return events


def test_a_watch_resumes_across_sigkill_and_a_compacted_version_is_410_then_relist(tmp_path: Path) -> None:
    state, port = tmp_path / "state", free_port()
    path = "/api/v1/namespaces/res/configmaps"
    with running(state, port) as server:
        with server.client() as client:
            _ns(client, "res")
            created = client.post(path, json={"metadata": {"name": "cm"}, "data": {"n": "0"}})
            assert created.status_code == 201
            start_rv = created.json()["metadata"]["resourceVersion"]
            for n in range(1, 5):  # 4 updates before the crash
                assert client.patch(f"{path}/cm", json={"data": {"n": str(n)}},
                                    headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
        _kill(server)
    with running(state, port) as server, server.client() as client:
        for n in range(5, 8):  # 3 after the restart, and one object deleted
            assert client.patch(f"{path}/cm", json={"data": {"n": str(n)}},
                                headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
        assert client.post(path, json={"metadata": {"name": "gone"}}).status_code == 201
        assert client.delete(f"{path}/gone").status_code == 200
        events = _watch(client, path, start_rv, 9)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == \
            [("MODIFIED", "cm")] * 7 + [("ADDED", "gone"), ("DELETED", "gone")]
        assert [e["object"]["data"]["n"] for e in events[:7]] == [str(n) for n in range(1, 8)]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and versions[0] > int(start_rv)
        last_rv = str(versions[-1])
    with sqlite3.connect(state / "state.db") as db:  # compact the history (as the store's pruning does)
        db.execute("DELETE FROM events WHERE rv <= ?", (int(last_rv) - 1,))
    with running(state, port) as server, server.client() as client:
        expired = _watch(client, path, start_rv, 1)
        assert len(expired) == 1 and expired[0]["type"] in ("ERROR", "HTTP"), expired
        assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"
        listed = client.get(path)  # the re-list
        assert [i["metadata"]["name"] for i in listed.json()["items"]] == ["cm"]
        assert listed.json()["items"][0]["data"] == {"n": "7"}
        relist_rv = listed.json()["metadata"]["resourceVersion"]
        assert client.patch(f"{path}/cm", json={"data": {"n": "8"}},
                            headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
        resumed = _watch(client, path, relist_rv, 1)
        assert [(e["type"], e["object"]["data"]["n"]) for e in resumed] == [("MODIFIED", "8")]
