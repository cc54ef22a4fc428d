"""The manifest-directory provider: scanning, change detection, validation, statuses."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from infergate.controller.providers.file import FileProvider
from infergate.controller.resources import ObjectRef
from infergate.controller.translator import TranslatorOptions, translate

GW = "gateway.networking.k8s.io"
GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate}
spec: {controllerName: infergate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc}]}]   # no port: the API server's CEL rejects it
"""


def bump(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_scan_detects_changes_skips_hidden_files_and_rejects_invalid_objects(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(GATEWAY)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("ignored")
    provider = FileProvider(tmp_path)
    assert provider.scan() is True
    assert provider.scan() is False  # nothing changed
    assert {r.kind for r in provider.snapshot().all()} == {"GatewayClass", "Gateway"}

    (tmp_path / "route.yaml").write_text(ROUTE)
    assert provider.scan() is True
    assert [r.kind for r in provider.snapshot().all() if r.kind == "HTTPRoute"] == []
    assert "Must have port for Service reference" in provider.errors[str(tmp_path / "route.yaml")]

    bump(tmp_path / "route.yaml", ROUTE.replace("{name: svc}", "{name: svc, port: 80}"))
    assert provider.scan() is True
    assert str(tmp_path / "route.yaml") not in provider.errors
    assert len(provider.snapshot().list(GW, "HTTPRoute")) == 1

    # A half-written file keeps its previous content.
    bump(tmp_path / "route.yaml", "apiVersion: [")
    assert provider.scan() is True
    assert len(provider.snapshot().list(GW, "HTTPRoute")) == 1
    assert "invalid YAML" in provider.errors[str(tmp_path / "route.yaml")]

    (tmp_path / "route.yaml").unlink()
    assert provider.scan() is True
    assert provider.snapshot().list(GW, "HTTPRoute") == ()


async def test_statuses_are_stored_fed_back_and_written_to_the_status_file(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "gateway.yaml").write_text(GATEWAY)
    status_file = tmp_path / "status.yaml"
    provider = FileProvider(manifests, status_file=status_file)
    provider.scan()
    options = TranslatorOptions(now="2026-01-01T00:00:00Z")
    result = translate(provider.snapshot(), options)
    assert await provider.write_statuses(result, options.controller_name) == 2  # class + gateway
    written = yaml.safe_load(status_file.read_text())
    address = written["Gateway.gateway.networking.k8s.io default/gw"]["addresses"][0]["value"]
    # The stored status is part of the next snapshot, as with an API server ...
    gw = provider.snapshot().get(GW, "Gateway", "default", "gw")
    assert gw is not None and gw.status["addresses"][0]["value"] == address
    # ... so a fresh allocator (a restart) keeps the Gateway's address, and an unchanged
    # translation writes nothing, keeping lastTransitionTime.
    later = TranslatorOptions(now="2026-02-02T00:00:00Z")
    again = translate(provider.snapshot(), later)
    assert again.ir.listeners[0].address == address
    assert await provider.write_statuses(again, later.controller_name) == 0
    stored = provider.statuses()[ObjectRef(GW, "Gateway", "default", "gw")]
    assert stored["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
