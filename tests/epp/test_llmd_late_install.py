"""llm-d.ai CRDs installed while the EPP runs: the EPP keeps applying the x-k8s.io rewrites and
objectives until the llm-d.ai copies arrive (or a short grace passes), so that
`migrate llm-d --install-crds`, which copies right after installing the CRDs, drops no request.

Defect (tests/migrate/test_after_ga_up.py::test_llmd_move_under_load failed once under load):
the EPP switched to the new, still empty llm-d.ai group the moment its CRD appeared, and
applied no rewrite until the copies landed: a 404 for an alias only a rewrite serves."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from infergate.epp.datastore import Datastore
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP
from infergate.epp.sources.kubernetes import KubernetesEventHandler

from .test_rewrite import exact, obj

RNG = random.Random(0)


class Timers:
    """A fake ``call_later``: the callbacks are run by the test."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> bool:
        self.pending.append((delay, fn))
        return True

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, fn in due:
            fn()


def objective(name: str, priority: int, group: str) -> dict[str, object]:
    return {"apiVersion": f"{group}/v1alpha2", "kind": "InferenceObjective",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "poolRef": {"name": "pool"}}}


def _started(timers: Timers, *, llmd_served: bool) -> tuple[KubernetesEventHandler, Datastore]:
    """An EPP's first lists: x-k8s.io objects, and the llm-d.ai CRDs installed or not (empty)."""
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool", call_later=timers)
    h.rewrite_list(XK8S_GROUP, [obj("alias", [exact("reviewer", "food-review-2")], group=XK8S_GROUP)])
    h.rewrite_list(LLMD_GROUP, [], served=llmd_served)
    h.objective_list([objective("crit", 5, XK8S_GROUP)])
    h.objective_list([], LLMD_GROUP, served=llmd_served)
    return h, ds


def _running(timers: Timers) -> tuple[KubernetesEventHandler, Datastore]:
    """An EPP that started before the llm-d.ai CRDs existed, serving x-k8s.io objects."""
    h, ds = _started(timers, llmd_served=False)
    assert ds.rewrites.pick("reviewer", RNG) == "food-review-2" and timers.pending == []
    return h, ds


def _priority(ds: Datastore, name: str) -> int | None:
    found = ds.objective(name)
    return None if found is None else found.priority


def test_a_new_empty_llmd_group_waits_for_its_copies() -> None:
    timers = Timers()
    h, ds = _running(timers)
    h.rewrite_list(LLMD_GROUP, [], served=True)  # the CRD appeared; the copies are not there yet
    h.objective_list([], LLMD_GROUP, served=True)
    assert ds.rewrites.pick("reviewer", RNG) == "food-review-2"  # before the fix: None
    assert _priority(ds, "crit") == 5
    assert [delay for delay, _ in timers.pending] == [h.late_crd_grace_s, h.late_crd_grace_s]
    h.rewrite_event(LLMD_GROUP, "ADDED", obj("alias", [exact("reviewer", "copy-target")]))
    assert ds.rewrites.pick("reviewer", RNG) == "copy-target" and ds.rewrites.active_group == LLMD_GROUP
    assert _priority(ds, "crit") == 5  # objectives switch on their own copies
    h.objective_event("ADDED", objective("crit", 9, LLMD_GROUP), LLMD_GROUP)
    assert _priority(ds, "crit") == 9
    timers.fire()  # the graces end after the copies: nothing changes
    assert ds.rewrites.pick("reviewer", RNG) == "copy-target" and _priority(ds, "crit") == 9
    # llm-d.ai now reads alone: deleting its copy does not bring the x-k8s.io object back
    h.rewrite_event(LLMD_GROUP, "DELETED", obj("alias", []))
    assert ds.rewrites.pick("reviewer", RNG) is None


def test_an_llmd_group_that_stays_empty_takes_over_after_the_grace() -> None:
    timers = Timers()
    h, ds = _running(timers)
    h.rewrite_list(LLMD_GROUP, [], served=True)
    h.objective_list([], LLMD_GROUP, served=True)
    h.rewrite_list(LLMD_GROUP, [], served=True)  # a relist in the grace sets no second timer
    assert len(timers.pending) == 2
    timers.fire()
    assert ds.rewrites.pick("reviewer", RNG) is None and ds.rewrites.active_group == LLMD_GROUP
    assert _priority(ds, "crit") is None  # a pending move: llm-d.ai is read alone, as the llm-d router does
    h.rewrite_list(LLMD_GROUP, [], served=True)  # a relist later (410 Gone) keeps reading llm-d.ai
    assert ds.rewrites.pick("reviewer", RNG) is None and timers.pending == []


def test_crds_removed_within_the_grace_cancel_the_switch() -> None:
    timers = Timers()
    h, ds = _running(timers)
    h.rewrite_list(LLMD_GROUP, [], served=True)
    h.rewrite_list(LLMD_GROUP, [], served=False)  # uninstalled again (a rolled-back move)
    timers.fire()
    assert ds.rewrites.pick("reviewer", RNG) == "food-review-2"


def test_an_epp_that_starts_with_the_crds_installed_reads_llmd_at_once() -> None:
    timers = Timers()
    _, ds = _started(timers, llmd_served=True)
    assert ds.rewrites.pick("reviewer", RNG) is None and _priority(ds, "crit") is None
    assert timers.pending == []


async def test_the_grace_runs_on_the_event_loop() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool", late_crd_grace_s=0.05)
    h.rewrite_list(XK8S_GROUP, [obj("alias", [exact("reviewer", "food-review-2")], group=XK8S_GROUP)])
    h.rewrite_list(LLMD_GROUP, [], served=False)
    h.rewrite_list(LLMD_GROUP, [], served=True)
    assert ds.rewrites.pick("reviewer", RNG) == "food-review-2"
    await asyncio.sleep(0.2)
    assert ds.rewrites.pick("reviewer", RNG) is None


def test_each_objective_list_or_event_replaces_the_datastores_objectives_once_at_most() -> None:
    """One push per list or event, and none for the group the datastore does not hold (before, an
    llm-d.ai list or a settling event pushed twice, and an x-k8s.io event while llm-d.ai was active
    rebuilt the llm-d.ai set)."""
    timers = Timers()
    h, ds = _running(timers)
    pushes: list[tuple[str, ...]] = []
    replace = ds.replace_objectives

    def counted(objectives: Any) -> None:
        objectives = list(objectives)
        pushes.append(tuple(sorted(o.name for o in objectives)))
        replace(objectives)

    ds.replace_objectives = counted  # type: ignore[method-assign]
    h.objective_list([], LLMD_GROUP, served=True)  # installed, still empty: waits, x-k8s.io stays
    assert pushes == [] and _priority(ds, "crit") == 5
    h.objective_event("ADDED", objective("crit", 7, LLMD_GROUP), LLMD_GROUP)  # the copy: switches, once
    assert pushes == [("crit",)] and _priority(ds, "crit") == 7
    h.objective_event("MODIFIED", objective("crit", 6, XK8S_GROUP))  # the group not held: no push
    assert pushes == [("crit",)] and _priority(ds, "crit") == 7
    h.objective_event("ADDED", objective("std", 1, LLMD_GROUP), LLMD_GROUP)
    assert pushes == [("crit",), ("crit", "std")]
    h.objective_list([objective("crit", 7, LLMD_GROUP)], LLMD_GROUP, served=True)  # a relist: once
    assert pushes == [("crit",), ("crit", "std"), ("crit",)]
    h.objective_list([], LLMD_GROUP, served=False)  # CRD removed: back to x-k8s.io's (as modified), once
    assert pushes[3:] == [("crit",)] and _priority(ds, "crit") == 6
    timers.fire()  # the grace of the first list: the switch happened already, nothing to do
    assert len(pushes) == 4 and _priority(ds, "crit") == 6
