"""The EPP becomes ready fast (issue 17 defect 8): readiness follows the first list of the pool
and its pods and the first scrape of each pod at once (checked by events, not by a timed
threshold), and the EPP's start imports neither the API models nor the `kubernetes` package
(together about half of its start-up CPU before the fix)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.epp.runner import EPPOptions, EPPRunner
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port

from .kube_pool import create_pool, install_crds

ADDRESSES = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("epp-startup-apiserver"))
    try:
        install_crds(handle, reference_dir)
        yield handle
    finally:
        handle.stop()


def test_the_epp_start_imports_neither_the_api_models_nor_the_kubernetes_package(
        apiserver: ThreadedAPIServer) -> None:
    code = ("import sys\n"
            "import infergate.cli.epp, infergate.epp.runner, infergate.epp.sources.kubernetes, uvloop\n"
            "from infergate.kube import kinds\n"
            "from infergate.kube.config import load_config\n"
            "load_config(sys.argv[1])\n"
            "kinds.get('llm-d.ai', 'InferenceObjective'); kinds.get('inference.networking.x-k8s.io', "
            "'InferenceModelRewrite')\n"
            "print(sorted(m for m in ('pydantic', 'kubernetes', 'infergate.api.registry', 'infergate.api.core') "
            "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code, str(apiserver.kubeconfig_path)], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.e2e
async def test_ready_at_the_first_check_after_the_lists_and_first_scrapes(apiserver: ThreadedAPIServer) -> None:
    port = free_port()
    sims = SimCluster(SimConfig(time_scale=20.0), ADDRESSES, port)
    await sims.start()
    namespace = create_pool(apiserver, port, ADDRESSES)
    runner = EPPRunner(EPPOptions(pool_name="pool", pool_namespace=namespace, kubeconfig=str(apiserver.kubeconfig_path),
                                  host="127.0.0.1", grpc_port=0, grpc_health_port=0, metrics_port=0,
                                  shutdown_grace=0.1))
    events: dict[str, float] = {}
    try:
        await runner.start()
        assert runner.readiness is not None and runner.parts is not None
        readiness, store = runner.readiness, runner.parts.store
        deadline = time.monotonic() + 30
        while "ready" not in events:
            assert time.monotonic() < deadline, f"not ready: waiting for {readiness.waiting_for()}"
            now = time.monotonic()
            if readiness.listed():
                events.setdefault("listed", now)
            for endpoint in runner.datastore.endpoints() if runner.datastore else ():
                if endpoint.hostport in store.failures_by_endpoint:
                    events.setdefault(f"scraped {endpoint.hostport}", now)
            # the conditions as observed in this same check; readiness must agree with them at once
            conditions_met = "listed" in events and all(f"scraped {a}:{port}" in events for a in ADDRESSES)
            if runner.is_ready():
                events["ready"] = now
                assert conditions_met, events  # never ready before the lists and the first scrapes
            else:
                assert not conditions_met, events  # ... and ready at the first check after them
            await asyncio.sleep(0.001)
        assert all(store.raw(f"{a}:{port}") is not None for a in ADDRESSES)  # real figures, not failures
        assert readiness.warm_after is not None
    finally:
        await runner.stop()
        await sims.stop()
