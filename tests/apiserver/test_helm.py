"""The real helm v4.3 (server-side apply by default, protobuf release Secrets) against the
embedded API server: install, list, status, upgrade (with --wait), rollback-free uninstall."""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-helm")]

CHARTS_DIR = Path(__file__).resolve().parent / "charts"


def test_helm_install_upgrade_list_status_uninstall(upstream_crds, helm, kubectl, namespace) -> None:
    chart = str(CHARTS_DIR / "demo")
    installed = helm("install", "demo", chart, "-n", namespace, "--set", "greeting=hi")
    assert re.search(r"^STATUS: deployed$", installed.stdout, re.M)
    assert re.search(r"^REVISION: 1$", installed.stdout, re.M)
    assert kubectl("get", "cm", "demo-cm", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout == "hi"
    assert kubectl("get", "infpool", "demo-pool", "-n", namespace,
                   "-o", "jsonpath={.spec.targetPorts[0].number}").stdout == "8000"
    cm = kubectl("get", "cm", "demo-cm", "-n", namespace, "-o", "json", "--show-managed-fields").json()
    assert cm["metadata"]["annotations"]["meta.helm.sh/release-name"] == "demo"
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert [m["manager"] for m in cm["metadata"]["managedFields"]] == ["helm"]

    listed = helm("list", "-n", namespace).stdout.splitlines()
    assert listed[0].split() == ["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP", "VERSION"]
    row = listed[1].split("\t")
    assert [c.strip() for c in (row[0], row[1], row[2], row[4], row[5])] == ["demo", namespace, "1", "deployed",
                                                                              "demo-0.1.0"]

    # the release Secret arrived as protobuf; its payload must be stored byte for byte
    secret = kubectl("get", "secret", "sh.helm.release.v1.demo.v1", "-n", namespace, "-o", "json").json()
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["labels"]["owner"] == "helm"
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
    assert release["name"] == "demo" and release["config"] == {"greeting": "hi"}

    upgraded = helm("upgrade", "demo", chart, "-n", namespace, "--set", "greeting=bye", "--set", "pool.port=8001",
                    "--wait", "--timeout", "60s")
    assert re.search(r"^REVISION: 2$", upgraded.stdout, re.M)
    assert kubectl("get", "cm", "demo-cm", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout == "bye"
    assert kubectl("get", "infpool", "demo-pool", "-n", namespace,
                   "-o", "jsonpath={.spec.targetPorts[0].number}").stdout == "8001"
    status = helm("status", "demo", "-n", namespace).stdout
    assert re.search(r"^STATUS: deployed$", status, re.M) and re.search(r"^REVISION: 2$", status, re.M)
    history = helm("history", "demo", "-n", namespace).stdout
    assert re.search(r"^1\s.*superseded", history, re.M) and re.search(r"^2\s.*deployed", history, re.M)

    uninstalled = helm("uninstall", "demo", "-n", namespace)
    assert uninstalled.stdout.strip() == 'release "demo" uninstalled'
    assert helm("list", "-n", namespace).stdout.strip().splitlines()[1:] == []
    gone = kubectl("get", "cm,svc,infpool,secrets", "-n", namespace)
    assert gone.stdout == "" and "No resources found" in gone.stderr


def test_helm_client_side_upgrade_uses_strategic_merge(upstream_crds, helm, kubectl, namespace) -> None:
    chart = str(CHARTS_DIR / "demo")
    helm("install", "csa", chart, "-n", namespace, "--server-side=false")
    helm("upgrade", "csa", chart, "-n", namespace, "--server-side=false", "--set", "greeting=again",
         "--set", "pool.appLabel=sglang")
    assert kubectl("get", "cm", "csa-cm", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout == "again"
    assert kubectl("get", "infpool", "csa-pool", "-n", namespace,
                   "-o", "jsonpath={.spec.selector.matchLabels.app}").stdout == "sglang"
    helm("uninstall", "csa", "-n", namespace)


def test_helm_installs_chart_crds_and_waits_for_established(helm, kubectl, namespace) -> None:
    start = time.monotonic()
    installed = helm("install", "gadgets", str(CHARTS_DIR / "withcrd"), "-n", namespace, "--wait", "--timeout", "30s")
    assert re.search(r"^STATUS: deployed$", installed.stdout, re.M)
    assert time.monotonic() - start < 20, "helm must not wait out its CRD timeout"
    table = kubectl("get", "gdg", "-n", namespace).stdout.split()
    assert table[:4] == ["NAME", "SIZE", "AGE", "gadgets-gadget"]
    assert table[4] == "1"  # the schema default
    helm("uninstall", "gadgets", "-n", namespace)
