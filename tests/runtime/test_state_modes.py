"""Issue 13 item 1: what `infergate up` leaves on disk is readable by its owner only, and a
pod's token is its own ServiceAccount's, in both authorization modes.

The API server's state directory is 0700 and ``state.db`` (every Secret) with its -wal/-shm
0600; the local runtime's per-pod volume tree is 0700, and the files in it (the
service-account token, Secret and ConfigMap volumes) 0600.
"""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import pytest

from infergate.apiserver.runtime import resource_path

from .conftest import running_cluster
from .test_rbac_pods import new_namespace, token_subject, wait_ready_pod
from .test_runtime_e2e import sim_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-modes")]
LOOP = pytest.mark.asyncio(loop_scope="module")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@LOOP
@pytest.mark.parametrize("authorization_mode", ["AlwaysAllow", "RBAC"])
async def test_pod_volumes_are_private_and_hold_the_pods_own_token(tmp_path: Path, repo_root: Path,
                                                                   authorization_mode: str) -> None:
    rbac = authorization_mode == "RBAC"
    async with running_cluster(tmp_path, authorization_mode=authorization_mode,
                               service_account_tokens=rbac) as (api, runtime, client):
        namespace = await new_namespace(client)
        await client.create(resource_path("v1", "secrets", namespace), {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "data": {"password": base64.b64encode(uuid.uuid4().hex.encode()).decode()}})
        doc = sim_deployment(repo_root, "sim-modes", 1)
        doc["metadata"]["namespace"] = namespace
        pod_spec = doc["spec"]["template"]["spec"]
        pod_spec["volumes"] = [{"name": "creds", "secret": {"secretName": "creds"}}]
        pod_spec["containers"][0]["volumeMounts"] = [{"name": "creds", "mountPath": "/etc/creds"}]
        await client.create(resource_path("apps/v1", "deployments", namespace), doc)
        pod = await wait_ready_pod(client, namespace, "app=sim-modes", timeout=60)
        name = pod["metadata"]["name"]

        volume = runtime.options.state_dir / "volumes" / namespace / name
        token = volume / "serviceaccount" / "token"
        assert token_subject(token.read_text()) == f"system:serviceaccount:{namespace}:default"
        assert api.token not in token.read_text()

        # every directory from the runtime's state down to the pod's files is the owner's only
        for directory in (runtime.options.state_dir, runtime.options.state_dir / "volumes",
                          volume.parent, volume, volume / "serviceaccount", volume / "creds"):
            assert _mode(directory) == 0o700, (directory, oct(_mode(directory)))
        for private in (token, volume / "creds" / "password"):
            assert _mode(private) == 0o600, (private, oct(_mode(private)))
        for found in volume.rglob("*"):
            assert _mode(found) & 0o077 == 0, (found, oct(_mode(found)))

        state = api.state_dir
        assert _mode(state) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm", "token", "sa-signing.key", "tls.key",
                     "kubeconfig"):
            assert _mode(state / name) == 0o600, (name, oct(_mode(state / name)))
        await client.delete(resource_path("apps/v1", "deployments", namespace, "sim-modes"))
