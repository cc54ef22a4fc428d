"""A selecting watch's view: objects entering or leaving the selection, in replay and live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver.handlers.common import Target
from infergate.apiserver.handlers.watch import WatchOptions, replay, selection_event
from infergate.apiserver.resources import ResourceRegistry
from infergate.apiserver.selectors import label_selector
from infergate.apiserver.store import ObjectKey, Store


def cm(name: str, namespace: str = "a", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                 "labels": labels}}


SELECTED = label_selector("app=web")


@pytest.mark.parametrize(("event_type", "now", "before", "sent"), [
    ("ADDED", cm("x", app="web"), None, "ADDED"),
    ("ADDED", cm("x", app="db"), None, None),
    ("MODIFIED", cm("x", app="web"), cm("x", app="web"), "MODIFIED"),
    ("MODIFIED", cm("x", app="web"), cm("x", app="db"), "ADDED"),  # entered the selection
    ("MODIFIED", cm("x", app="db"), cm("x", app="web"), "DELETED"),  # left it
    ("MODIFIED", cm("x", app="db"), cm("x", app="db"), None),
    ("MODIFIED", cm("x", app="web"), None, "MODIFIED"),  # previous unknown: as selected now
    ("DELETED", cm("x", app="web"), None, "DELETED"),
    ("DELETED", cm("x", app="db"), None, None),
])
def test_selection_event(event_type: str, now: dict[str, Any], before: dict[str, Any] | None,
                         sent: str | None) -> None:
    assert selection_event(event_type, now, before, SELECTED) == sent


def test_replay_since_a_resource_version_follows_the_selection(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    rtype = ResourceRegistry().get("", "configmaps")
    assert rtype is not None

    def write(obj: dict[str, Any], event_type: str) -> None:
        key = ObjectKey("", "configmaps", obj["metadata"]["namespace"], obj["metadata"]["name"])
        store.write(key, obj, event_type, store.get(key))

    write(cm("x", app="web"), "ADDED")
    start = store.resource_version
    write(cm("x", app="db"), "MODIFIED")  # leaves
    write(cm("x", app="web"), "MODIFIED")  # comes back
    write(cm("y", app="db"), "ADDED")  # never selected
    write(cm("z", namespace="b", app="web"), "ADDED")  # another namespace
    target = Target(rtype, "v1", "a", None, None)
    options = WatchOptions(SELECTED, send_initial=False, bookmarks=False, resource_version=str(start), timeout=None)
    result = replay(store, target, options)
    assert [(t, o["metadata"]["name"]) for t, o in result.changes] == [("DELETED", "x"), ("ADDED", "x")]
    assert result.last_rv == store.resource_version and result.too_old is None
    everything = replay(store, Target(rtype, "v1", None, None, None),
                        WatchOptions(SELECTED, send_initial=False, bookmarks=False, resource_version="0", timeout=None))
    assert sorted(o["metadata"]["name"] for _, o in everything.changes) == ["x", "z"]
    store.close()
