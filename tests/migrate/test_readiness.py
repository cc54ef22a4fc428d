"""`wait-ready` means an Available GA EPP Deployment and ready endpoints behind its Service, and
a run repairs a GA EPP that lost its Deployment (issue 17 defect 1): after a rollback, `run
--retry` printed "GA EPPs ready" in 0.0 s with the Deployment deleted (the Service was there)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from infergate.kube.kinds import ENDPOINT_SLICES
from infergate.migrate.readiness import SERVICE_NAME_LABEL, epp_not_ready
from infergate.migrate.resources import DEPLOYMENTS, SERVICES

TESTDATA = Path(__file__).resolve().parent / "testdata"
CHARTS = TESTDATA / "charts"
GA = "vllm-llama3-8b-instruct-ga"
GA_EPP = f"{GA}-epp"


def run(migrate: Any, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "5", "--analysis-delay", "0", "--probes", "0",
                     "--gateway-url", "http://127.0.0.1:9", *args)
    return result.returncode, json.loads(result.stdout)


def steps_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in report["steps"]}


def test_retry_after_a_rollback_recreates_a_deleted_ga_epp_deployment(
        migrate: Any, cluster: Any, preview_stack: str, status_writer: Any) -> None:
    ns = preview_stack
    code, report = run(migrate, ns)
    assert code == 4, report  # paused at analyse-0: no traffic
    assert migrate("rollback", "-n", ns, "--route", "llm-route").returncode == 0
    assert cluster.delete(DEPLOYMENTS, ns, GA_EPP)
    time.sleep(0.5)  # the endpoints controller (the status writer) empties the Service's slice
    assert epp_not_ready(cluster, ns, GA_EPP) == [f"EPP Deployment {ns}/{GA_EPP} missing",
                                                  f"EPP Service {ns}/{GA_EPP} has no ready endpoint"]

    code, report = run(migrate, ns, "--retry")
    assert code == 4, report
    steps = steps_of(report)
    assert f"recreated the missing Deployment {GA_EPP}" in steps[f"install-pool-{GA}"]["detail"], steps
    assert cluster.get(DEPLOYMENTS, ns, GA_EPP) is not None
    assert "ready endpoints behind the EPP Service" in steps["wait-ready"]["detail"]


def test_a_resumed_run_repairs_the_epp_before_waiting_and_fails_when_it_never_serves(
        migrate: Any, cluster: Any, preview_stack: str, status_writers: Any) -> None:
    ns = preview_stack
    writer = status_writers(ns)
    code, report = run(migrate, ns, "--stop-after", "apply-objectives")
    assert code == 0, report
    writer.stop()  # from here on nothing makes Deployments ready or fills EndpointSlices
    assert cluster.delete(DEPLOYMENTS, ns, GA_EPP)
    code, report = run(migrate, ns, "--ready-timeout", "2")
    assert code == 1, report
    wait = steps_of(report)["wait-ready"]
    assert wait["status"] == "fail"
    assert f"EPP Deployment {ns}/{GA_EPP} has no available replica" in wait["detail"], wait
    assert cluster.get(DEPLOYMENTS, ns, GA_EPP) is not None  # recreated before waiting


def test_a_deployment_that_is_available_without_ready_endpoints_is_not_ready(cluster: Any, namespace: str) -> None:
    ns = namespace
    cluster.apply(DEPLOYMENTS, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "epp", "namespace": ns},
                                "spec": {"selector": {"matchLabels": {"app": "epp"}},
                                         "template": {"metadata": {"labels": {"app": "epp"}},
                                                      "spec": {"containers": [{"name": "epp", "image": "epp"}]}}}})
    cluster.merge_patch_status(DEPLOYMENTS, ns, "epp", {"status": {"replicas": 1, "readyReplicas": 1,
                                                                    "availableReplicas": 1}})
    assert epp_not_ready(cluster, ns, "epp") == [f"EPP Service {ns}/epp missing"]
    cluster.apply(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "epp", "namespace": ns},
                             "spec": {"selector": {"app": "epp"}, "ports": [{"name": "grpc", "port": 9002}]}})
    assert epp_not_ready(cluster, ns, "epp") == [f"EPP Service {ns}/epp has no ready endpoint"]
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"name": "epp-abc", "namespace": ns, "labels": {SERVICE_NAME_LABEL: "epp"}},
              "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": False}}]}
    cluster.apply(ENDPOINT_SLICES, slice_)
    assert epp_not_ready(cluster, ns, "epp") == [f"EPP Service {ns}/epp has no ready endpoint"]
    slice_["endpoints"][0]["conditions"]["ready"] = True  # type: ignore[index]
    cluster.apply(ENDPOINT_SLICES, slice_)
    assert epp_not_ready(cluster, ns, "epp") == []
    cluster.merge_patch_status(DEPLOYMENTS, ns, "epp", {"status": {"conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}})
    assert epp_not_ready(cluster, ns, "epp") == [f"EPP Deployment {ns}/epp not Available (MinimumReplicasUnavailable)"]


def test_retry_repairs_a_half_installed_ga_release_with_helm_upgrade(
        migrate: Any, cluster: Any, kubectl: Any, helm: Any, namespace: str, status_writers: Any) -> None:
    ns = namespace
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    status_writers(ns)
    chart = ("--chart", str(CHARTS / "inferencepool-v1"), "--chart-version", "")
    code, report = run(migrate, ns, *chart)
    assert code == 4, report
    assert migrate("rollback", "-n", ns, "--route", "llm-route").returncode == 0
    assert cluster.delete(DEPLOYMENTS, ns, "llama-ga-epp")
    code, report = run(migrate, ns, "--retry", *chart)
    assert code == 4, report
    detail = steps_of(report)["install-pool-llama-ga"]["detail"]
    assert "helm upgrade llama-ga" in detail and "Deployment llama-ga-epp was missing" in detail, detail
    assert cluster.get(DEPLOYMENTS, ns, "llama-ga-epp") is not None
