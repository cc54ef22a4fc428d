"""`infergate migrate llm-d`: x-k8s InferenceObjective / InferenceModelRewrite -> llm-d.ai
(copy, verify, delete the old; rollback), with the real kubectl against the module's API server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from aiohttp import web

from infergate.api.headers import INFERENCE_OBJECTIVE
from infergate.epp.metrics import EppMetrics
from infergate.migrate.generations import LLMD_MODEL_REWRITES, LLMD_OBJECTIVES
from infergate.migrate.llmd import COPIED_FROM, PROBE_OBJECTIVE
from infergate.migrate.llmd_probe import objective_count
from infergate.migrate.resources import CRDS, MODEL_REWRITES, OBJECTIVES
from infergate.util.net import free_port
from infergate.util.wait import wait_until

from .conftest import REPO, TESTDATA, load_objects

Migrate = Tool = Any
OBJECTS = TESTDATA / "generations" / "v1.0-objects.yaml"


def _apply_crds(cluster: Any, bundle: str) -> None:
    for crd in load_objects(REPO / "config" / "crd" / bundle):
        cluster.apply(CRDS, crd)


@pytest.fixture
def llmd_crds(cluster: Any) -> None:
    _apply_crds(cluster, "gie-v1.5.yaml")
    _apply_crds(cluster, "llm-d.yaml")


def _names(kubectl: Tool, resource: str, ns: str) -> list[str]:
    out = kubectl.run("get", resource, "-n", ns, "-o", "json").stdout
    return sorted(i["metadata"]["name"] for i in json.loads(out)["items"])


def _specs(cluster: Any, resource: Any, ns: str) -> dict[str, Any]:
    return {o["metadata"]["name"]: o["spec"] for o in cluster.list(resource, ns)}


def test_missing_llmd_crds_is_an_error_naming_them(migrate: Migrate, kubectl: Tool, cluster: Any,
                                                   namespace: str) -> None:
    _apply_crds(cluster, "gie-v1.5.yaml")
    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.delete(CRDS, None, crd["metadata"]["name"])
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    result = migrate("llm-d", "-n", namespace)
    assert result.returncode == 1, result.out
    assert "inferenceobjectives.llm-d.ai" in result.stdout and "infergate crds --bundle llm-d" in result.stdout
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == ["batch", "food-review"]


def _remove_llmd_crds(cluster: Any) -> None:
    _apply_crds(cluster, "gie-v1.5.yaml")
    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.delete(CRDS, None, crd["metadata"]["name"])


LLMD_CRDS = ["inferenceobjectives.llm-d.ai", "inferencemodelrewrites.llm-d.ai"]


def test_install_crds_installs_them_right_before_the_copies(migrate: Migrate, kubectl: Tool, cluster: Any,
                                                            namespace: str) -> None:
    """Defect: the move needed the llm-d.ai CRDs installed by a separate command first, and an
    EPP reads only llm-d.ai from that moment: on `infergate up` under load, about a second in
    which no rewrite applied (every request for a model name no pod serves failed, 404).
    --install-crds installs them in the run, right before the copies (rewrites first)."""
    _remove_llmd_crds(cluster)
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    plan = migrate("llm-d", "-n", namespace, "--install-crds", "--plan", "-o", "json")
    assert plan.returncode == 0, plan.out
    assert [s["step"] for s in json.loads(plan.stdout)["steps"]][:3] == ["precheck", "install-crds", "copy"]
    dry = migrate("llm-d", "-n", namespace, "--install-crds", "--dry-run")
    assert dry.returncode == 0, dry.out
    assert [c for c in LLMD_CRDS if cluster.get(CRDS, None, c) is not None] == []  # nothing installed
    result = migrate("llm-d", "-n", namespace, "--install-crds", "-o", "json", "--switch-grace", "0")
    assert result.returncode == 0, result.out
    report = json.loads(result.stdout)
    assert report["phase"] == "completed"
    assert [(s["step"], s["detail"].split(" (")[0]) for s in report["steps"][:5]] == [
        ("precheck", "3 object(s) to move"), ("install-crds", ", ".join(LLMD_CRDS)),
        ("copy", "InferenceModelRewrite food-review-canary"), ("copy", "InferenceObjective batch"),
        ("copy", "InferenceObjective food-review")]
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == ["batch", "food-review"]
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == []
    again = migrate("llm-d", "-n", namespace, "--install-crds")  # installed now: a plain move, nothing left
    assert again.returncode == 0 and "nothing to move" in again.stdout, again.out


def test_install_crds_then_a_failed_probe_removes_them_again(migrate: Migrate, kubectl: Tool, cluster: Any,
                                                             namespace: str, gateway: StandInGateway) -> None:
    """Left installed (and empty), the llm-d.ai CRDs would keep the EPP from the x-k8s objects."""
    _remove_llmd_crds(cluster)
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    gateway.serve_llmd = False
    result = migrate("llm-d", "-n", namespace, "--install-crds", "--probe-settle", "0.5", *gateway.args)
    assert result.returncode == 5, result.out
    assert "and the llm-d.ai CRDs this run installed" in result.stdout
    assert [c for c in LLMD_CRDS if cluster.get(CRDS, None, c) is not None] == []
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == ["batch", "food-review"]


def test_move_copies_then_deletes_the_old(migrate: Migrate, kubectl: Tool, cluster: Any, namespace: str,
                                          llmd_crds: None) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    before = _specs(cluster, OBJECTIVES, namespace), _specs(cluster, MODEL_REWRITES, namespace)
    plan = migrate("llm-d", "-n", namespace, "--plan", "-o", "json")
    assert plan.returncode == 0, plan.out
    steps = [s["step"] for s in json.loads(plan.stdout)["steps"]]
    assert steps == ["precheck", "copy", "copy", "copy", "verify-copies", "verify-epp",
                     "delete-old", "delete-old", "delete-old"]
    dry = migrate("llm-d", "-n", namespace, "--dry-run")
    assert dry.returncode == 0, dry.out
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == []  # --plan, --dry-run change nothing

    result = migrate("llm-d", "-n", namespace, "-o", "json", "--switch-grace", "0")
    assert result.returncode == 0, result.out
    assert json.loads(result.stdout)["phase"] == "completed"
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == []
    assert _names(kubectl, "inferencemodelrewrites.inference.networking.x-k8s.io", namespace) == []
    assert (_specs(cluster, LLMD_OBJECTIVES, namespace), _specs(cluster, LLMD_MODEL_REWRITES, namespace)) == before
    copy = cluster.get(LLMD_OBJECTIVES, namespace, "food-review")
    assert copy["metadata"]["annotations"][COPIED_FROM] == "inference.networking.x-k8s.io/v1alpha2"
    # nothing is pending any more for this move
    check = json.loads(migrate("check", "-n", namespace, "-o", "json", "--no-helm").stdout)
    assert not [f for f in check["findings"] if f["namespace"] == namespace]

    back = migrate("llm-d", "-n", namespace, "--rollback")
    assert back.returncode == 0, back.out
    assert (_specs(cluster, OBJECTIVES, namespace), _specs(cluster, MODEL_REWRITES, namespace)) == before
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == []
    assert _names(kubectl, "inferencemodelrewrites.llm-d.ai", namespace) == []


def test_an_llmd_object_with_another_spec_is_refused(migrate: Migrate, kubectl: Tool, cluster: Any,
                                                     namespace: str, llmd_crds: None) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    other = yaml.safe_load(OBJECTS.read_text().split("---")[0])
    other["apiVersion"] = "llm-d.ai/v1alpha2"
    other["spec"]["priority"] = 99
    kubectl.run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(other))
    result = migrate("llm-d", "-n", namespace)
    assert result.returncode == 6, result.out
    assert f"inferenceobjectives.llm-d.ai {namespace}/food-review exists with another spec" in result.stdout
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == ["batch", "food-review"]
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == ["food-review"]


class StandInGateway:
    """A gateway + EPP stand-in in a thread: it admits a request with the priority of the
    objective its header names, looked up among the llm-d.ai InferenceObjectives of the
    namespace (an EPP with the llm-d.ai CRDs reads only those), and counts it in the EPP's real
    metrics. ``serve_llmd`` False: it ignores the copies (an EPP that was not switched).
    ``lag_s``: it sees an objective only that long after its first look at it (a watch that lags).
    ``poll_s``: it looks whether the llm-d.ai CRDs exist only that often, and reads the x-k8s
    objectives until it sees them (as infergate's EPP polls a resource that is not served)."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.metrics = EppMetrics()
        self.serve_llmd = True
        self.lag_s = 0.0
        self.poll_s = 0.0
        self.llmd_requests = 0  # requests admitted while it read llm-d.ai
        self._llmd_seen: tuple[float, bool] | None = None  # (when it looked, whether the CRD existed)
        self._first_seen: dict[str, float] = {}
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _completions(self, request: web.Request) -> web.Response:
        name = request.headers.get(INFERENCE_OBJECTIVE, "")
        reads_llmd = await asyncio.to_thread(self.reads_llmd)
        self.llmd_requests += reads_llmd
        group = LLMD_OBJECTIVES if reads_llmd else OBJECTIVES
        listed = await asyncio.to_thread(self.cluster.list, group, self.namespace) if self.serve_llmd else []
        now = time.monotonic()
        known = {o["metadata"]["name"]: int(o["spec"].get("priority") or 0) for o in listed
                 if now - self._first_seen.setdefault(o["metadata"]["name"], now) >= self.lag_s}
        objective = name if name in known else ""
        self.metrics.request_priority_total.labels("m", "m", objective, str(known.get(name, 0))).inc()
        return web.json_response({"choices": [{"text": "ok"}]})

    def reads_llmd(self) -> bool:
        now = time.monotonic()
        if self._llmd_seen is None or now - self._llmd_seen[0] >= self.poll_s:
            self._llmd_seen = (now, self.cluster.get(CRDS, None, LLMD_OBJECTIVES.qualified) is not None)
        return self._llmd_seen[1]

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> StandInGateway:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def args(self) -> list[str]:
        url = f"http://127.0.0.1:{self.port}"
        return ["--gateway-url", url, "--epp-metrics", f"{url}/metrics", "--probe-model", "m"]


@pytest.fixture
def gateway(cluster: Any, namespace: str) -> Iterator[StandInGateway]:
    with StandInGateway(cluster, namespace) as g:
        yield g


def test_epp_probe_passes_when_the_copies_are_served(migrate: Migrate, kubectl: Tool, namespace: str,
                                                     llmd_crds: None, gateway: StandInGateway) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    result = migrate("llm-d", "-n", namespace, *gateway.args)
    assert result.returncode == 0, result.out
    assert "the EPP reads llm-d.ai and admits each objective with its priority" in result.stdout
    text = gateway.metrics.render().decode()
    assert objective_count(text, "food-review", 10) == 3 and objective_count(text, "batch", -1) == 3
    assert objective_count(text, PROBE_OBJECTIVE, 0) == 3  # first: that it reads llm-d.ai at all


def test_epp_probe_waits_for_the_epp_to_see_the_copies(migrate: Migrate, kubectl: Tool, namespace: str,
                                                       llmd_crds: None, gateway: StandInGateway) -> None:
    """Defect: the probe ran once right after the copies were applied, so an EPP whose watch had
    not delivered them yet admitted the probes without the objective and the move rolled back.
    It retries (bounded) until the EPP serves the copies."""
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    gateway.lag_s = 1.0
    result = migrate("llm-d", "-n", namespace, *gateway.args)
    assert result.returncode == 0, result.out
    assert "the EPP reads llm-d.ai and admits each objective with its priority" in result.stdout
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == []
    text = gateway.metrics.render().decode()
    assert objective_count(text, "food-review", 10) >= 3 and objective_count(text, "batch", -1) >= 3


def test_the_old_objects_stay_until_the_epp_reads_llmd(migrate: Migrate, kubectl: Tool, cluster: Any,
                                                      namespace: str, gateway: StandInGateway) -> None:
    """Defect: the copies carry the originals' names and priorities, so the probe passed on an EPP
    that still read the x-k8s objects (it notices new CRDs by polling), and delete-old then took
    its rewrites away until it switched: on `infergate up` under load, 404s for a model name only
    a rewrite serves. The probe now first needs an objective that exists in llm-d.ai only."""
    _remove_llmd_crds(cluster)
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    gateway.poll_s = 1.5
    assert not gateway.reads_llmd()  # it looked before the CRDs were installed
    result = migrate("llm-d", "-n", namespace, "--install-crds", *gateway.args)
    assert result.returncode == 0, result.out
    assert gateway.llmd_requests > 0  # the x-k8s objects were deleted only once the EPP read llm-d.ai
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == ["batch", "food-review"]  # probe one gone


def test_without_a_probe_the_old_objects_stay_until_the_crds_are_old_enough(
        migrate: Migrate, kubectl: Tool, cluster: Any, namespace: str) -> None:
    _remove_llmd_crds(cluster)
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    result = migrate("llm-d", "-n", namespace, "--install-crds", "--switch-grace", "1.5s", "-o", "json")
    assert result.returncode == 0, result.out
    [wait] = [s for s in json.loads(result.stdout)["steps"] if s["step"] == "wait-switch"]
    assert 0 < float(wait["detail"].split()[1]) <= 1.5, wait  # creationTimestamp has whole seconds
    again = migrate("llm-d", "-n", namespace, "--switch-grace", "1.5s", "-o", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["phase"] == "nothing-to-do", again.out


def test_epp_probe_failure_deletes_the_copies(migrate: Migrate, kubectl: Tool, namespace: str,
                                              llmd_crds: None, gateway: StandInGateway) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    gateway.serve_llmd = False
    result = migrate("llm-d", "-n", namespace, *gateway.args, "--probe-settle", "1s")
    assert result.returncode == 5, result.out
    assert "it does not serve the copy; retried for 1 s" in result.stdout
    assert _names(kubectl, "inferenceobjectives.llm-d.ai", namespace) == []
    assert _names(kubectl, "inferencemodelrewrites.llm-d.ai", namespace) == []
    assert _names(kubectl, "inferenceobjectives.inference.networking.x-k8s.io", namespace) == ["batch", "food-review"]


def test_probe_options_go_together(migrate: Migrate, namespace: str) -> None:
    result = migrate("llm-d", "-n", namespace, "--gateway-url", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "--gateway-url, --epp-metrics and --probe-model together" in result.stderr
    bad = migrate("llm-d", "-n", namespace, "--probe-settle", "soon")
    assert bad.returncode == 2 and "--probe-settle" in bad.stderr, bad.out


def test_plan_shows_the_llmd_move(migrate: Migrate, kubectl: Tool, namespace: str, llmd_crds: None) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    result = migrate("plan", "-n", namespace, "--move", "x-k8s-to-llm-d")
    assert result.returncode == 0, result.out
    assert "inferenceobjectives.inference.networking.x-k8s.io" in result.stdout
    assert "delete-old" in result.stdout and "verify-epp" in result.stdout


class RunningEppSource:
    """infergate's EPP Kubernetes source (the informers `infergate epp` runs) for one GA pool,
    feeding a real Datastore, on its own event loop in a thread."""

    def __init__(self, kubeconfig: str, namespace: str, pool: str) -> None:
        from infergate.epp.datastore import Datastore
        from infergate.epp.sources.kubernetes import KubernetesSource

        self.datastore = Datastore()
        self.source = KubernetesSource(pool, namespace, "inference.networking.k8s.io", kubeconfig=kubeconfig,
                                       watch_timeout=1, retry_delay=0.2)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self) -> None:
        self._task = asyncio.ensure_future(self.source.run(self.datastore))

    async def _stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def __enter__(self) -> RunningEppSource:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def priorities(self) -> dict[str, int]:
        return {o.name: o.priority for o in self.datastore.objectives()}


def test_the_real_epp_serves_the_copies_and_no_gap(migrate: Migrate, kubectl: Tool, cluster: Any, namespace: str,
                                                   llmd_crds: None, apiserver: Any) -> None:
    """With the llm-d.ai CRDs installed, infergate's EPP ignores the x-k8s objects (the reason the
    move is pending); after `migrate llm-d` it serves the copies: the objectives' priorities and
    the rewrite's weighted targets."""
    _apply_crds(cluster, "gie-v1.6.yaml")
    pool = "vllm-llama3-8b-instruct"
    kubectl.run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": pool},
        "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                 "endpointPickerRef": {"name": f"{pool}-epp", "port": {"number": 9002}}}}))
    kubectl.run("apply", "-n", namespace, "-f", str(OBJECTS))
    with RunningEppSource(str(apiserver.kubeconfig_path), namespace, pool) as epp:
        wait_until(lambda: epp.source.synced, 15, what="the EPP's watches to sync")
        assert epp.priorities() == {}  # llm-d.ai installed: the x-k8s objectives are ignored
        assert epp.datastore.rewrites.pick("food-review", random.Random(0)) is None
        result = migrate("llm-d", "-n", namespace, "--switch-grace", "0")
        assert result.returncode == 0, result.out
        wait_until(lambda: epp.priorities() == {"food-review": 10, "batch": -1}, 15,
                   what="the EPP to serve the llm-d.ai objectives")
        rng = random.Random(3)
        drawn = [epp.datastore.rewrites.pick("food-review", rng) for _ in range(2000)]
        assert set(drawn) == {"food-review-1", "food-review-2"}
        assert abs(drawn.count("food-review-1") / 2000 - 0.9) < 0.03
