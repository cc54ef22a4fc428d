"""Imperative `kubectl create ...` / `kubectl run`: kubectl's typed clients send these
objects as protobuf. The oracle is kubectl itself: `--dry-run=client -o json` prints the
object it would send, and the stored object must contain all of it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-kubectl-create")]


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(empty(v) for v in value.values()))


def contains(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks something ``expected`` has (empty maps and nulls are ignored)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        problems = []
        for key, value in expected.items():
            if empty(value):
                continue
            problems.extend(contains(value, actual.get(key), f"{path}.{key}"))
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return [p for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for p in contains(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


COMMANDS = [
    (["deployment", "web", "--image=nginx:1.27", "--replicas=2", "--port=8080"], "deployment", "web"),
    (["service", "clusterip", "svc-a", "--tcp=80:8080", "--tcp=443:https"], "service", "svc-a"),
    (["service", "nodeport", "svc-b", "--tcp=81:8081", "--node-port=30081"], "service", "svc-b"),
    (["serviceaccount", "robot"], "serviceaccount", "robot"),
    (["role", "reader", "--verb=get,list,watch", "--resource=pods,deployments.apps",
      "--resource-name=one"], "role", "reader"),
    (["rolebinding", "reader-binding", "--role=reader", "--user=alice", "--group=devs",
      "--serviceaccount=default:robot"], "rolebinding", "reader-binding"),
    (["job", "once", "--image=busybox", "--", "echo", "hi"], "job", "once"),
    (["secret", "generic", "creds", "--from-literal=user=admin", "--type=Opaque"], "secret", "creds"),
    (["configmap", "settings", "--from-literal=mode=fast"], "configmap", "settings"),
]


def dry_run(args: list[str]) -> list[str]:
    """``args`` with the client-side dry-run flags (before a ``--`` command separator)."""
    at = args.index("--") if "--" in args else len(args)
    return [*args[:at], "--dry-run=client", "-o", "json", *args[at:]]


@pytest.mark.parametrize(("args", "kind", "name"), COMMANDS, ids=[c[2] for c in COMMANDS])
def test_kubectl_create_stores_what_kubectl_sent(kubectl, namespace, args, kind, name) -> None:
    expected = kubectl("create", "-n", namespace, *dry_run(args)).json()
    created = kubectl("create", "-n", namespace, *args)
    assert created.stdout.strip().endswith(f"/{name} created"), created.out
    stored = kubectl("get", kind, name, "-n", namespace, "-o", "json").json()
    expected["metadata"].pop("creationTimestamp", None)
    assert contains(expected, stored) == []


def test_cluster_scoped_rbac_and_kubectl_run(kubectl, namespace) -> None:
    for args in (["clusterrole", f"view-{namespace}", "--verb=get", "--resource=pods", "--non-resource-url=/healthz"],
                 ["clusterrolebinding", f"view-{namespace}", f"--clusterrole=view-{namespace}", "--group=devs"]):
        expected = kubectl("create", *dry_run(args)).json()
        kubectl("create", *args)
        stored = kubectl("get", args[0], args[1], "-o", "json").json()
        expected["metadata"].pop("creationTimestamp", None)
        assert contains(expected, stored) == []
    run = ["run", "probe", "-n", namespace, "--image=busybox", "--env=A=b", "--labels=app=probe", "--port=80",
           "--restart=Never", "--", "sleep", "1"]
    expected = kubectl(*dry_run(run)).json()
    assert kubectl(*run).stdout.strip() == "pod/probe created"
    stored = kubectl("get", "pod", "probe", "-n", namespace, "-o", "json").json()
    expected["metadata"].pop("creationTimestamp", None)
    assert contains(expected, stored) == []
    assert stored["spec"]["containers"][0]["args"] == ["sleep", "1"]
