"""SQLite object store with a global, monotonically increasing resourceVersion (kine-like).

Objects are kept as JSON rows keyed by (group, plural resource, namespace, name); the
namespace is ``""`` for cluster-scoped objects. Every write appends a row to ``events``
whose integer key *is* the new resourceVersion, in the same transaction as the object
row, so a watch can resume from any retained revision. The database runs in WAL mode with
``synchronous=FULL``: once a write returns, it survives a crash. There is one writer
(the server's event loop thread).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.apiserver.deepjson import dumps, loads
from infergate.util.files import private_file

EVENT_RETENTION = 20_000  # events kept for watch resumption
_PRUNE_EVERY = 1_000
MAX_OBJECT_BYTES = 1536 * 1024  # etcd's default --max-request-bytes: what a real cluster stores at most


class ObjectTooLarge(ValueError):
    """An object whose stored form is over :data:`MAX_OBJECT_BYTES` (nothing was written)."""


@dataclass(frozen=True)
class ObjectKey:
    group: str
    resource: str
    namespace: str
    name: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    group: str
    resource: str
    namespace: str
    resource_version: int
    object: dict[str, Any]
    previous: dict[str, Any] | None = None  # the object before a MODIFIED, when known


class ResourceVersionTooOld(Exception):
    """The requested resourceVersion is older than the oldest retained event."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grp, resource, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, type TEXT NOT NULL, grp TEXT NOT NULL, resource TEXT NOT NULL,
    namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_resource ON events (grp, resource, rv);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        # the database holds every Secret: owner-only, as are its -wal and -shm (SQLite gives
        # them the database's mode; existing ones from an older version are tightened too)
        for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if companion == path or companion.exists():
                private_file(companion)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self._rv = int(row[0]) if row else 1
        self._writes = 0

    def close(self) -> None:
        self._db.close()

    @property
    def resource_version(self) -> int:
        return self._rv

    # reads -----------------------------------------------------------------------------

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT body FROM objects WHERE grp=? AND resource=? AND namespace=? AND name=?",
            (key.group, key.resource, key.namespace, key.name),
        ).fetchone()
        return loads(row[0]) if row else None

    def list_objects(self, group: str, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE grp=? AND resource=? ORDER BY namespace, name",
                (group, resource),
            )
        else:
            rows = self._db.execute(
                "SELECT body FROM objects WHERE grp=? AND resource=? AND namespace=? ORDER BY name",
                (group, resource, namespace),
            )
        return [loads(body) for (body,) in rows]

    def list_namespace(self, namespace: str) -> list[tuple[ObjectKey, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT grp, resource, name, body FROM objects WHERE namespace=?", (namespace,)
        )
        return [(ObjectKey(g, r, namespace, n), loads(b)) for g, r, n, b in rows]

    def find_dependents(self, uid: str) -> list[tuple[ObjectKey, dict[str, Any]]]:
        """Objects whose ownerReferences name ``uid``."""
        rows = self._db.execute(
            "SELECT grp, resource, namespace, name, body FROM objects WHERE body LIKE ?", (f"%{uid}%",)
        )
        found = []
        for g, r, ns, n, body in rows:
            obj = loads(body)
            refs = (obj.get("metadata") or {}).get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                found.append((ObjectKey(g, r, ns, n), obj))
        return found

    def events_since(self, rv: int, group: str, resource: str) -> list[WatchEvent]:
        oldest = self._db.execute("SELECT MIN(rv) FROM events").fetchone()[0]
        if oldest is not None and rv < oldest - 1:
            raise ResourceVersionTooOld(f"too old resource version: {rv} ({oldest - 1})")
        rows = self._db.execute(
            "SELECT rv, type, namespace, name, body FROM events WHERE grp=? AND resource=? AND rv>? ORDER BY rv",
            (group, resource, rv),
        ).fetchall()
        events: list[WatchEvent] = []
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for r, t, ns, name, body in rows:
            obj = loads(body)
            previous = last.get((ns, name))
            if t == "MODIFIED" and previous is None:
                before = self._db.execute(
                    "SELECT body FROM events WHERE grp=? AND resource=? AND namespace=? AND name=? AND rv<? "
                    "ORDER BY rv DESC LIMIT 1", (group, resource, ns, name, r),
                ).fetchone()
                previous = loads(before[0]) if before else None
            events.append(WatchEvent(t, group, resource, ns, r, obj, previous if t == "MODIFIED" else None))
            last[(ns, name)] = obj
        return events

    # writes ----------------------------------------------------------------------------

    def write(self, key: ObjectKey, obj: dict[str, Any], event_type: str,
              previous: dict[str, Any] | None = None) -> WatchEvent:
        """Store ``obj`` (ADDED/MODIFIED) or remove it (DELETED) at a new resourceVersion.

        Sets ``metadata.resourceVersion`` on ``obj`` in place and returns the event.
        """
        rv = self._rv + 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        body = dumps(obj)
        if event_type != "DELETED" and len(body) > MAX_OBJECT_BYTES:  # an object stored before is always deletable
            raise ObjectTooLarge(f"{len(body)} bytes, the limit is {MAX_OBJECT_BYTES}")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO events (rv, type, grp, resource, namespace, name, body) VALUES (?,?,?,?,?,?,?)",
                (rv, event_type, key.group, key.resource, key.namespace, key.name, body),
            )
            if event_type == "DELETED":
                db.execute(
                    "DELETE FROM objects WHERE grp=? AND resource=? AND namespace=? AND name=?",
                    (key.group, key.resource, key.namespace, key.name),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO objects (grp, resource, namespace, name, rv, body) "
                    "VALUES (?,?,?,?,?,?)",
                    (key.group, key.resource, key.namespace, key.name, rv, body),
                )
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', ?)", (str(rv),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._rv = rv
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            db.execute("DELETE FROM events WHERE rv <= ?", (rv - EVENT_RETENTION,))
        return WatchEvent(event_type, key.group, key.resource, key.namespace, rv, obj, previous)
