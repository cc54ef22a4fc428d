"""`infergate up` as a library: API server + CRDs + GatewayClasses + gateway + local runtime.

    async with LocalCluster(UpOptions(state_dir=Path(".infergate"))) as cluster:
        cluster.kubeconfig_path, cluster.api_url, cluster.runtime, cluster.gateway

Start order: the embedded API server; the Gateway API CRDs (as a managed cluster has them)
and, on request, the inference CRDs; the GatewayClass ``infergate`` and one per
``--gateway-class``; the local runtime; the service proxy (when on); the gateway controller
(``infergate gateway --kubeconfig``, with Envoy). Stop order is the reverse; nothing keeps
running.

``UpOptions(gateway=False)`` (``infergate up --no-gateway``) is the control plane alone: no
GatewayClass and no gateway process, the service proxy on, so that ``helm install infergate
charts/infergate`` runs the controller (and the Envoy Deployments it creates) as local pods
and LoadBalancer Services get loopback addresses that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.apiserver import EmbeddedAPIServer
from infergate.apiserver.runtime import (
    DEFAULT_IMAGE_PREFIXES,
    DEFAULT_LOAD_BALANCER_POOL,
    DEFAULT_POD_CIDR,
    LocalRuntime,
    PodIPAllocator,
    RuntimeOptions,
    ServiceProxy,
    ServiceProxyOptions,
)
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.errors import KubeError
from infergate.up.gateway import GatewayProcess, GatewayProcessOptions
from infergate.util.net import free_port
from infergate.util.procs import pid_alive

log = logging.getLogger(__name__)

CONTROLLER_NAME = "infergate.io/gateway-controller"
DEFAULT_GATEWAY_CLASS = "infergate"
FIELD_MANAGER = "infergate-up"
# --with-inference-crds -> crds bundle; current: GIE v1.6.0's InferencePool + the llm-d router's objectives/rewrites
INFERENCE_CRDS = {"preview": "preview", "ga": "ga", "both": "all", "current": "current"}
READY_FILE = "up.json"
PID_FILE = "up.pid"


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443  # 0: a free port
    gateway_classes: tuple[str, ...] = ()
    with_inference_crds: str | None = None  # preview | ga | both | current
    pod_cidr: str = DEFAULT_POD_CIDR
    address_pool: str = "127.0.2.0/24"
    image_prefixes: tuple[str, ...] = DEFAULT_IMAGE_PREFIXES
    controller_name: str = CONTROLLER_NAME
    gateway_admin_port: int = 0  # 0: a free port
    envoy_log_level: str = "warning"
    authorization_mode: str = "AlwaysAllow"  # RBAC: enforced; pods get their own ServiceAccount's token
    gateway: bool = True  # False (--no-gateway): no built-in gateway process and no GatewayClass
    service_proxy: bool | None = None  # Service addresses answer; None: on exactly when gateway is False
    load_balancer_pool: str = DEFAULT_LOAD_BALANCER_POOL  # loopback addresses of type: LoadBalancer Services

    def __post_init__(self) -> None:
        # refused early, with the flag's name (the pool network is refused as the runtime starts)
        PodIPAllocator(self.load_balancer_pool, what="--load-balancer-pool")
        PodIPAllocator(self.pod_cidr, what="--pod-cidr")
        if self.gateway:  # by the gateway's own rule; else the gateway process refuses it, again at each restart
            try:
                LoopbackAllocator(self.address_pool)
            except ValueError as exc:
                raise ValueError(f"--address-pool: {exc}") from None
        if not self.gateway and self.gateway_classes:
            raise ValueError("--gateway-class: without the built-in gateway (--no-gateway) infergate up creates no "
                             "GatewayClass; the chart does (helm install infergate charts/infergate "
                             "--set 'gatewayClasses[0].name=NAME')")

    @property
    def proxy_enabled(self) -> bool:
        return (not self.gateway) if self.service_proxy is None else self.service_proxy


class AlreadyRunning(RuntimeError):
    pass


def crd_documents(with_inference_crds: str | None) -> list[dict[str, Any]]:
    """The CRDs `infergate up` installs: Gateway API, plus an inference bundle on request."""
    from infergate.api import crds

    docs = crds.generate("gateway-api")
    if with_inference_crds:
        if with_inference_crds not in INFERENCE_CRDS:
            raise ValueError(f"--with-inference-crds: one of {', '.join(INFERENCE_CRDS)}, got {with_inference_crds!r}")
        names = {d["metadata"]["name"] for d in docs}
        docs += [d for d in crds.generate(INFERENCE_CRDS[with_inference_crds]) if d["metadata"]["name"] not in names]
    return docs


def gateway_class(name: str, controller_name: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "infergate-up"}},
            "spec": {"controllerName": controller_name,
                     "description": "Served by infergate's gateway (Envoy) on this machine."}}


class LocalCluster:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.api = EmbeddedAPIServer(self.state_dir, options.host, options.port,
                                     authorization_mode=options.authorization_mode)
        self.runtime: LocalRuntime | None = None
        self.proxy: ServiceProxy | None = None
        self._proxy_client: KubeClient | None = None
        self.gateway: GatewayProcess | None = None
        self._pid_written = False

    @property
    def kubeconfig_path(self) -> Path:
        return self.api.kubeconfig_path

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def gateway_class_names(self) -> list[str]:
        """The GatewayClasses `infergate up` creates (none without its gateway)."""
        if not self.options.gateway:
            return []
        return [DEFAULT_GATEWAY_CLASS, *(n for n in self.options.gateway_classes if n != DEFAULT_GATEWAY_CLASS)]

    def _claim_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pid_path = self.state_dir / PID_FILE
        if pid_path.exists():
            with contextlib.suppress(ValueError):
                pid = int(pid_path.read_text().strip() or 0)
                if pid and pid != os.getpid() and pid_alive(pid):
                    raise AlreadyRunning(f"infergate up is already running on {self.state_dir} (pid {pid}); "
                                         f"stop it first (kill {pid}) or use another --state-dir")
        pid_path.write_text(f"{os.getpid()}\n")
        self._pid_written = True

    async def start(self) -> None:
        self._claim_state_dir()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        o = self.options
        await self.api.start()
        async with KubeClient.from_kubeconfig(self.kubeconfig_path) as client:
            await install_crds(client, crd_documents(o.with_inference_crds))
            for name in self.gateway_class_names:
                body = gateway_class(name, o.controller_name)
                await client.apply(kinds.GATEWAY_CLASSES.path(name=name), body, FIELD_MANAGER)
        self.runtime = LocalRuntime(RuntimeOptions(
            kubeconfig=self.kubeconfig_path, state_dir=self.state_dir / "runtime", pod_cidr=o.pod_cidr,
            image_prefixes=o.image_prefixes, service_account_tokens=o.authorization_mode == "RBAC"))
        await self.runtime.start()
        if self.api.server is not None:  # `kubectl logs` of local pods
            self.api.server.add_subresource_handler("", "pods", "log", self.runtime.log_server())
        if o.proxy_enabled:
            self._proxy_client = KubeClient.from_kubeconfig(self.kubeconfig_path)
            await self._proxy_client.open()
            self.proxy = ServiceProxy(self._proxy_client, ServiceProxyOptions(
                load_balancer_pool=o.load_balancer_pool,
                state_file=self.state_dir / "runtime" / "load-balancer-ips.json"))
            await self.proxy.start()
            await self.proxy.wait_synced(20.0)
        if o.gateway:
            self.gateway = GatewayProcess(GatewayProcessOptions(
                kubeconfig=self.kubeconfig_path, work_dir=self.state_dir / "gateway",
                log_path=self.state_dir / "logs" / "gateway.log", admin_port=o.gateway_admin_port or free_port(),
                controller_name=o.controller_name, gateway_classes=tuple(o.gateway_classes),
                address_pool=o.address_pool, envoy_log_level=o.envoy_log_level))
            await self.gateway.start()
        (self.state_dir / READY_FILE).write_text(json.dumps({
            "pid": os.getpid(), "kubeconfig": str(self.kubeconfig_path), "server": self.api_url,
            "gateway_admin": self.gateway.admin_url if self.gateway is not None else None,
            "gateway_classes": self.gateway_class_names,
            "load_balancer_pool": o.load_balancer_pool if o.proxy_enabled else None,
            "logs": str(self.state_dir / "logs")}, indent=1) + "\n")

    async def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / READY_FILE).unlink()
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None
        if self.proxy is not None:
            await self.proxy.stop()
            self.proxy = None
        if self._proxy_client is not None:
            await self._proxy_client.close()
            self._proxy_client = None
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None
        await self.api.stop()
        if self._pid_written:
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / PID_FILE).unlink()
            self._pid_written = False

    async def __aenter__(self) -> LocalCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def install_crds(client: KubeClient, docs: list[dict[str, Any]], timeout: float = 20.0) -> None:
    """Server-side apply each CRD, then wait until every one is Established."""
    for doc in docs:
        await client.apply(kinds.CRDS.path(name=doc["metadata"]["name"]), doc, FIELD_MANAGER)
    deadline = asyncio.get_running_loop().time() + timeout
    pending = [d["metadata"]["name"] for d in docs]
    while pending:
        name = pending[0]
        obj = await client.get(kinds.CRDS.path(name=name))
        conditions = {c.get("type"): c.get("status") for c in ((obj or {}).get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            pending.pop(0)
            continue
        if asyncio.get_running_loop().time() > deadline:
            raise KubeError(504, f"CRD {name} not Established: {conditions}", reason="Timeout", method="WAIT",
                            path=kinds.CRDS.path(name=name))
        await asyncio.sleep(0.1)
