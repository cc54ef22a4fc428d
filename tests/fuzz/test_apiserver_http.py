"""Fuzzing the API server over HTTP: mutated ConfigMaps, Services and Deployments, arbitrary
bodies and the three patch types plus apply, sent to a running server.

A crash is a 5xx, a hang past the bound, or a server that stops answering ``/healthz``.
"""

from __future__ import annotations

import copy
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer

from ._profiles import fuzz_settings
from .apiserver_strategies import JSON_PATCHES, JSON_TEXT, KEYS, VALUES, YAML_TEXT

pytestmark = pytest.mark.fuzz
BOUND_S = 5.0  # one request, at most

BASES: dict[str, tuple[str, dict[str, Any]]] = {
    "configmaps": ("/api/v1", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                               "data": {"k": "v"}}),
    "services": ("/api/v1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                             "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8000}]}}),
    "deployments": ("/apis/apps/v1", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dep", "labels": {"app": "a"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}}}),
}
PATCH_TYPES = ["application/merge-patch+json", "application/json-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with a few fields (existing or new, at any level) set to arbitrary values or removed."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 4))):
        node: Any = obj
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict):
                break
            node = child
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node) or ["x"]), KEYS))
            if draw(st.integers(0, 5)) == 0:
                node.pop(key, None)
            else:
                node[key] = draw(VALUES)
    return obj


def _client(handle: ThreadedAPIServer) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(handle.ca_path))
    return httpx.Client(base_url=handle.url, verify=context, timeout=BOUND_S,
                        headers={"Authorization": f"Bearer {handle.token}"})


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("fuzz-apiserver"))
    try:
        with _client(handle) as client:
            yield client
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def namespace(http: httpx.Client) -> str:
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    for plural, (api, base) in BASES.items():
        assert http.post(f"{api}/namespaces/{name}/{plural}", json=base).status_code == 201
    return name


def _send(http: httpx.Client, method: str, path: str, body: bytes, content_type: str,
          params: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    response = http.request(method, path, content=body, headers={"Content-Type": content_type}, params=params)
    assert response.status_code < 500, (method, path, body[:300], response.text[:500])
    if response.status_code >= 400:
        assert response.json()["kind"] == "Status", response.text[:300]
    assert time.monotonic() - started < BOUND_S
    assert http.get("/healthz", timeout=2.0).status_code == 200


BODIES = st.one_of(
    st.sampled_from(sorted(BASES)).flatmap(lambda plural: st.tuples(st.just(plural), mutated(BASES[plural][1]).map(
        lambda obj: json.dumps(obj, allow_nan=True).encode()), st.just("application/json"))),
    st.tuples(st.sampled_from(sorted(BASES)), JSON_TEXT.map(str.encode), st.just("application/json")),
    st.tuples(st.sampled_from(sorted(BASES)), YAML_TEXT.map(str.encode), st.just("application/yaml")),
)


@fuzz_settings(150)
@given(BODIES, st.sampled_from(["POST", "PUT"]), st.sampled_from(["", "Strict", "Warn", "Ignore"]))
def test_create_and_update(http: httpx.Client, namespace: str, body: tuple[str, bytes, str], method: str,
                           validation: str) -> None:
    plural, raw, content_type = body
    api, base = BASES[plural]
    path = f"{api}/namespaces/{namespace}/{plural}" + ("" if method == "POST" else f"/{base['metadata']['name']}")
    _send(http, method, path, raw, content_type, {"fieldValidation": validation} if validation else None)


@fuzz_settings(150)
@given(st.sampled_from(sorted(BASES)), st.sampled_from(PATCH_TYPES), st.data())
def test_patches(http: httpx.Client, namespace: str, plural: str, patch_type: str, data: st.DataObject) -> None:
    api, base = BASES[plural]
    if patch_type == "application/json-patch+json":
        patch: Any = data.draw(JSON_PATCHES)
    elif patch_type == "application/apply-patch+yaml":
        patch = data.draw(mutated(base))
    else:
        patch = data.draw(st.one_of(mutated(base), VALUES))
    params = {"fieldManager": "fuzz", "force": "true"} if patch_type.startswith("application/apply") else None
    _send(http, "PATCH", f"{api}/namespaces/{namespace}/{plural}/{base['metadata']['name']}",
          json.dumps(patch, allow_nan=True).encode(), patch_type, params)
