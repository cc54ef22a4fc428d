"""`infergate demo`: `infergate up` on a fresh state directory, a stack, real requests.

Steps (each printed with rich): bring up the control plane, gateway and runtime (with the
inference CRDs); apply the simulator Deployment; install the stack (preview, GA or both)
with helm when ``charts/inferencepool`` exists, else with plain manifests; apply the Gateway
and the HTTPRoute; wait for the pods, ``Programmed`` and the first answer; send completions
(non-streaming and streaming, two models) and print which pod served each; print how to
send your own curl; keep running until Ctrl-C (or return at once with
``exit_after_requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource
from rich.console import Console

from infergate.apiserver.runtime import KubeClient, resource_path
from infergate.up import LocalCluster, UpOptions
from infergate.util.clitool import find_tool
from infergate.util.procs import pid_alive
from infergate.util.tls import default_verify_context
from infergate.util.wait import WaitTimeout, async_wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
SIM_APP = "vllm-llama3-8b-instruct"
POOLS = {"preview": "vllm-llama3-8b-instruct-preview", "ga": "vllm-llama3-8b-instruct-ga"}
POOL_API = {"preview": "inference.networking.x-k8s.io/v1alpha2", "ga": "inference.networking.k8s.io/v1"}
MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "food-review")
PROMPTS = {"meta-llama/Llama-3.1-8B-Instruct": "Write a haiku about load balancing.",
           "food-review": "Review the ramen at the station noodle bar."}


@dataclass(frozen=True)
class DemoOptions:
    stack: str = "preview"  # preview | ga | split
    state_dir: Path = Path(".infergate/demo")
    exit_after_requests: bool = False
    gateway_port: int | None = None  # None: 80, or 8080 when port 80 cannot be bound
    api_port: int = 0
    address_pool: str = "127.0.2.0/24"
    pod_cidr: str = "127.3.0.0/16"
    examples_dir: Path = REPO_ROOT / "examples"
    charts_dir: Path = REPO_ROOT / "charts"
    max_tokens: int = 40
    sim_time_scale: float | None = None  # None: real time, as the example Deployment says
    install_with: str = "auto"  # auto (helm when charts/inferencepool exists) | helm | manifests
    ready_timeout: float = 120.0
    authorization_mode: str = "AlwaysAllow"  # RBAC: `infergate up` enforces RBAC; pods use their ServiceAccount


@dataclass(frozen=True)
class RequestRecord:
    model: str
    stream: bool
    status: int
    pod: str
    text: str
    seconds: float
    served_model: str = "?"  # the response's "model" (an InferenceModel may rewrite it)


@dataclass
class DemoResult:
    gateway_address: str = ""
    gateway_port: int = 0
    kubeconfig: str = ""
    installed_with: dict[str, str] = field(default_factory=dict)  # stack -> "helm" | "manifests"
    requests: list[RequestRecord] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)  # split stack: requests each pool's EPP scheduled
    authorization_mode: str = "AlwaysAllow"
    epp_service_accounts: dict[str, list[str]] = field(default_factory=dict)  # stack -> its EPP pods' accounts
    # RBAC mode: `kubectl auth can-i list inferencepools.<group> --as=<account>` -> "yes" | "no", for each
    # EPP's account and for the namespace's default account
    can_list_pools: dict[str, str] = field(default_factory=dict)


class DemoError(RuntimeError):
    pass


def tool(name: str) -> str:
    """kubectl / helm: ``.tools/bin`` of the repository (``make tools``), else PATH."""
    found = find_tool(name)
    if found is None:
        raise DemoError(f"{name} not found: run `make tools` (it installs kubectl and helm under .tools/bin)")
    return found


def can_bind(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except PermissionError:
            return False
        except OSError:
            return True  # in use on 127.0.0.1 is fine: the Gateway gets its own address
    return True


def fresh_state_dir(path: Path) -> Path:
    """Remove a previous demo's state directory (only one that looks like ours)."""
    path = path.resolve()
    if path.exists():
        ours = not any(path.iterdir()) or (path / "state.db").exists() or (path / "kubeconfig").exists()
        if not ours:
            raise DemoError(f"{path} exists and is not an infergate state directory; choose another --state-dir")
        pid_file = path / "up.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                pid = int(pid_file.read_text().strip())
                if pid_alive(pid):
                    raise DemoError(f"infergate (pid {pid}) is running on {path}; stop it first")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


class Demo:
    def __init__(self, options: DemoOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(stderr=True)
        self.result = DemoResult()
        self.cluster: LocalCluster | None = None
        self.kubectl = tool("kubectl")
        self.stacks = ["preview", "ga"] if options.stack == "split" else [options.stack]
        if options.install_with not in ("auto", "helm", "manifests"):
            raise DemoError(f"--install-with: one of auto, helm, manifests; got {options.install_with!r}")
        if options.authorization_mode not in ("AlwaysAllow", "RBAC"):
            raise DemoError(f"--authorization-mode: AlwaysAllow or RBAC; got {options.authorization_mode!r}")
        if options.stack not in ("preview", "ga", "split"):
            raise DemoError(f"--stack: one of preview, ga, split; got {options.stack!r}")

    # -- helpers ------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.cluster is not None
        return {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig_path),
                "HELM_CACHE_HOME": str(self.cluster.state_dir / "helm" / "cache"),
                "HELM_CONFIG_HOME": str(self.cluster.state_dir / "helm" / "config"),
                "HELM_DATA_HOME": str(self.cluster.state_dir / "helm" / "data")}

    async def run_tool(self, *argv: str, stdin: str | None = None, show: bool = True, ok: tuple[int, ...] = (0,)) -> str:
        shown = " ".join(a if " " not in a else repr(a) for a in argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env())
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 120)
        if proc.returncode not in ok:
            raise DemoError(f"{shown} failed ({proc.returncode}):\n{err.decode()}{out.decode()}")
        if show:
            self.console.print(f"[dim]$ {shown.replace(self.kubectl, 'kubectl')}[/]", soft_wrap=True)
            for line in out.decode().rstrip().splitlines():
                self.console.print(f"  {line}", highlight=False, soft_wrap=True)
        return out.decode()

    async def kubectl_apply(self, path: Path) -> None:
        text = path.read_text()
        if path.name == "sim-deployment.yaml" and self.options.sim_time_scale:
            text = text.replace("--max-loras=4", f"--max-loras=4\n        - --time-scale={self.options.sim_time_scale}")
        if path.name == "gateway.yaml":
            text = text.replace("port: 80", f"port: {self.result.gateway_port}")
        await self.run_tool(self.kubectl, "apply", "-f", "-", stdin=text)

    async def step(self, title: str, action: Callable[[], Awaitable[Any]]) -> Any:
        started = time.monotonic()
        with self.console.status(title + "..."):
            value = await action()
        self.console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - started:.1f}s)[/]", soft_wrap=True)
        return value

    # -- the demo -------------------------------------------------------------------------------

    async def start(self) -> DemoResult:
        o = self.options
        port = o.gateway_port or (80 if can_bind(80) else 8080)
        if o.gateway_port is None and port != 80:
            self.console.print("[yellow]port 80 needs privileges here: the Gateway listens on 8080[/]")
        self.result.gateway_port = port
        state_dir = fresh_state_dir(o.state_dir)
        self.cluster = LocalCluster(UpOptions(state_dir=state_dir, port=o.api_port, with_inference_crds="both",
                                              address_pool=o.address_pool, pod_cidr=o.pod_cidr,
                                              authorization_mode=o.authorization_mode))
        rbac = " (RBAC enforced)" if o.authorization_mode == "RBAC" else ""
        await self.step("infergate up: API server, CRDs, GatewayClass infergate, gateway (Envoy), local runtime" + rbac,
                        self.cluster.start)
        self.result.kubeconfig = str(self.cluster.kubeconfig_path)
        await self.step("model servers: 3 simulator replicas",
                        lambda: self.kubectl_apply(o.examples_dir / "sim-deployment.yaml"))
        for stack in self.stacks:
            await self.step(f"{stack} stack: InferencePool {POOLS[stack]} ({POOL_API[stack]}) and its EPP",
                            lambda stack=stack: self.install_stack(stack))  # type: ignore[misc]
        await self.step("Gateway inference-gateway and HTTPRoute llm-route", self.apply_routing)
        await self.step("pods ready, Gateway Programmed, first answer through the gateway", self.wait_ready)
        self.result.authorization_mode = o.authorization_mode
        await self.record_epp_service_accounts()
        if o.authorization_mode == "RBAC":
            await self.show_rbac()
        await self.run_tool(self.kubectl, "get", "pods", "-o", "wide")
        await self.run_tool(self.kubectl, "get", "gateway", "-o", "wide")
        await self.send_requests()
        if len(self.stacks) == 2:
            await self.show_split()
        self.print_curl()
        return self.result

    async def install_stack(self, stack: str) -> None:
        o = self.options
        chart = o.charts_dir / "inferencepool"
        helm: str | None = None
        with contextlib.suppress(DemoError):
            helm = tool("helm")
        use_helm = o.install_with == "helm" or (
            o.install_with == "auto" and (chart / "Chart.yaml").exists() and helm is not None)
        if use_helm:
            if helm is None or not (chart / "Chart.yaml").exists():
                raise DemoError(f"--install-with helm needs the helm binary (make tools) and {chart}/Chart.yaml")
            # FailClose: the source document's (v1.0) chart default; the chart's is FailOpen (upstream v1.4+)
            argv = [helm, "install", POOLS[stack], str(chart),
                    "--set", f"inferencePool.modelServers.matchLabels.app={SIM_APP}",
                    "--set", "inferenceExtension.failureMode=FailClose"]
            if stack == "preview":
                argv += ["--set", f"inferencePool.apiVersion={POOL_API['preview']}"]
            await self.run_tool(*argv, show=False)
            self.console.print(f"[dim]$ helm install {POOLS[stack]} charts/inferencepool "
                               f"--set inferencePool.modelServers.matchLabels.app={SIM_APP}"
                               " --set inferenceExtension.failureMode=FailClose"
                               + (f" --set inferencePool.apiVersion={POOL_API['preview']}" if stack == "preview"
                                  else "") + "[/]", soft_wrap=True)
            self.result.installed_with[stack] = "helm"
        else:
            await self.kubectl_apply(o.examples_dir / "demo" / stack / "pool.yaml")
            self.result.installed_with[stack] = "manifests"
        await self.kubectl_apply(o.examples_dir / "demo" / stack /
                                 ("models.yaml" if stack == "preview" else "objectives.yaml"))

    async def apply_routing(self) -> None:
        await self.kubectl_apply(self.options.examples_dir / "demo" / "gateway.yaml")
        await self.kubectl_apply(self.options.examples_dir / "demo" / "routes" / f"{self.options.stack}.yaml")

    async def wait_ready(self) -> None:
        """Deployments ready and the Gateway Programmed, then a first 200 through it, within ready_timeout."""
        assert self.cluster is not None
        # One ready_timeout for both waits below (each polls with async_wait_until): a budget, not a loop.
        deadline = time.monotonic() + self.options.ready_timeout
        problems: list[str] = []
        async with KubeClient.from_kubeconfig(self.cluster.kubeconfig_path) as client:

            async def objects_ready() -> bool:
                problems[:] = await self._not_ready(client)
                return not problems

            try:
                await async_wait_until(objects_ready, self.options.ready_timeout, interval=0.5)
            except WaitTimeout:
                raise DemoError("not ready in time: " + "; ".join(problems) +
                                f" (logs: {self.cluster.state_dir / 'logs'}, "
                                f"{self.cluster.state_dir / 'runtime' / 'logs'})") from None
        # the EPPs learn the pods and their metrics a moment after the pods are Ready
        last = ""
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=30) as http:

            async def answers() -> bool:
                nonlocal last
                try:
                    response = await http.post(self.url("/v1/completions"), json={
                        "model": MODELS[0], "prompt": "ping", "max_tokens": 1})
                except httpx.TransportError as exc:
                    last = str(exc)
                    return False
                last = f"{response.status_code} {response.text[:200]}"
                return response.status_code == 200

            try:
                await async_wait_until(answers, max(deadline - time.monotonic(), 0.0), interval=0.5)
            except WaitTimeout:
                raise DemoError(f"the gateway did not answer 200 in time (last: {last})") from None

    async def _not_ready(self, client: KubeClient) -> list[str]:
        problems: list[str] = []
        deployments = [SIM_APP] + [f"{POOLS[s]}-epp" for s in self.stacks]
        listing = await client.list(resource_path("apps/v1", "deployments", "default"))
        by_name = {d["metadata"]["name"]: d for d in listing.get("items") or []}
        for name in deployments:
            dep = by_name.get(name)
            if dep is None:
                # the chart may name the EPP differently: accept any Deployment of the release
                matches = [d for n, d in by_name.items() if n.startswith(name.removesuffix("-epp"))]
                dep = matches[0] if matches else None
            want = int(((dep or {}).get("spec") or {}).get("replicas", 1))
            ready = int(((dep or {}).get("status") or {}).get("readyReplicas", 0))
            if dep is None or ready < want:
                problems.append(f"Deployment {name}: {ready}/{want} ready")
        gateway = await client.get(resource_path("gateway.networking.k8s.io/v1", "gateways", "default",
                                                 "inference-gateway"))
        status = (gateway or {}).get("status") or {}
        programmed = any(c.get("type") == "Programmed" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        addresses = status.get("addresses") or []
        if not programmed or not addresses:
            problems.append("Gateway inference-gateway not Programmed yet")
        else:
            self.result.gateway_address = str(addresses[0]["value"])
        return problems

    async def record_epp_service_accounts(self) -> None:
        """The ServiceAccount each pool's EPP pods run as (``spec.serviceAccountName``)."""
        assert self.cluster is not None
        async with KubeClient.from_kubeconfig(self.cluster.kubeconfig_path) as client:
            pods = (await client.list(resource_path("v1", "pods", "default"))).get("items") or []
        for stack in self.stacks:
            self.result.epp_service_accounts[stack] = sorted(
                str((pod.get("spec") or {}).get("serviceAccountName", "default")) for pod in pods
                if pod["metadata"]["name"].startswith(POOLS[stack] + "-"))

    async def show_rbac(self) -> None:
        """What RBAC lets each EPP's ServiceAccount (and, for contrast, ``default``) read: its pool."""
        self.console.print("\n[bold]RBAC[/]: each EPP reads the API server as its own ServiceAccount:")
        for stack in self.stacks:
            group = POOL_API[stack].split("/")[0]
            for account in [*self.result.epp_service_accounts.get(stack, [])[:1], "default"]:
                subject = f"system:serviceaccount:default:{account}"
                answer = (await self.run_tool(self.kubectl, "auth", "can-i", "list", f"inferencepools.{group}",
                                              "-n", "default", f"--as={subject}", ok=(0, 1))).strip()
                self.result.can_list_pools[f"{subject} list inferencepools.{group}"] = answer

    def url(self, path: str) -> str:
        return f"http://{self.result.gateway_address}:{self.result.gateway_port}{path}"

    async def send_requests(self) -> None:
        self.console.print(f"\n[bold]Completions through Gateway inference-gateway[/] ({self.options.stack} stack, "
                           f"http://{self.result.gateway_address}:{self.result.gateway_port}):")
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=120) as http:
            for model in MODELS:
                for stream in (False, True):
                    record = await self.complete(http, model, stream)
                    self.result.requests.append(record)
                    mark = "[green]200[/]" if record.status == 200 else f"[red]{record.status}[/]"
                    self.console.print(
                        f"{mark} POST /v1/completions model={model} {'stream' if stream else 'non-streaming'}"
                        f" -> pod [cyan]{record.pod}[/] (served model {record.served_model}, "
                        f"{record.seconds:.2f}s)", highlight=False, soft_wrap=True)
                    text = " ".join(record.text.split())
                    self.console.print(f"    [dim]{text[:110]}{'...' if len(text) > 110 else ''}[/]",
                                       highlight=False, soft_wrap=True)

    async def complete(self, http: httpx.AsyncClient, model: str, stream: bool,
                       max_tokens: int | None = None) -> RequestRecord:
        body = {"model": model, "prompt": PROMPTS[model], "max_tokens": max_tokens or self.options.max_tokens,
                "temperature": 0, "stream": stream}
        started = time.monotonic()
        async with http.stream("POST", self.url("/v1/completions"), json=body) as response:
            pod = response.headers.get("x-inference-pod", "?")
            if not stream or response.status_code != 200:
                raw = await response.aread()
                text, served = raw.decode(errors="replace"), "?"
                if response.status_code == 200:
                    answer = json.loads(raw)
                    text, served = answer["choices"][0]["text"], str(answer.get("model", "?"))
                return RequestRecord(model, stream, response.status_code, pod, text, time.monotonic() - started,
                                     served)
            parts: list[str] = []
            served = "?"
            async for event in EventSource(response).aiter_sse():
                if event.data != "[DONE]":
                    chunk = json.loads(event.data)
                    served = str(chunk.get("model", served))
                    parts.extend(c.get("text", "") for c in chunk.get("choices") or [])
            return RequestRecord(model, stream, response.status_code, pod, "".join(parts),
                                 time.monotonic() - started, served)

    async def epp_request_counts(self) -> dict[str, int]:
        """Requests each pool's EPP has scheduled (``inference_model_request_total`` on its metrics port)."""
        assert self.cluster is not None
        counts: dict[str, int] = {}
        async with KubeClient.from_kubeconfig(self.cluster.kubeconfig_path) as client, \
                httpx.AsyncClient(verify=default_verify_context(), timeout=5) as http:
            pods = (await client.list(resource_path("v1", "pods", "default"))).get("items") or []
            for stack in self.stacks:
                total = 0
                for pod in pods:
                    if not pod["metadata"]["name"].startswith(POOLS[stack] + "-"):
                        continue
                    ip = (pod.get("status") or {}).get("podIP")
                    response = await http.get(f"http://{ip}:9090/metrics")
                    for line in response.text.splitlines():
                        if line.startswith("inference_model_request_total{"):
                            total += int(float(line.rsplit(" ", 1)[1]))
                counts[stack] = total
        return counts

    async def show_split(self, requests: int = 40) -> None:
        before = await self.epp_request_counts()
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=60) as http:
            for i in range(requests):
                await self.complete(http, MODELS[i % 2], False, max_tokens=2)
        after = await self.epp_request_counts()
        self.result.split_counts = {stack: after[stack] - before.get(stack, 0) for stack in self.stacks}
        shares = ", ".join(f"{POOLS[s]} ({POOL_API[s]}): {n}" for s, n in self.result.split_counts.items())
        self.console.print(f"\n[bold]50/50 split[/]: {requests} more requests; scheduled by each pool's own EPP: "
                           f"{shares}", highlight=False, soft_wrap=True)

    def print_curl(self) -> None:
        kubeconfig = self.result.kubeconfig
        self.console.print("\n[bold]Send your own requests[/] (in another terminal):")
        lines = [
            f"export KUBECONFIG={kubeconfig}",
            "export PATH=$PWD/.tools/bin:$PATH   # kubectl and helm from `make tools`",
            "kubectl get gateway -o wide",
            "IP=$(kubectl get gateway/inference-gateway -o jsonpath='{.status.addresses[0].value}')",
            f"PORT={self.result.gateway_port}",
            "curl -i ${IP}:${PORT}/v1/completions -H 'Content-Type: application/json' -d '{\"model\": "
            "\"food-review\",\"prompt\": \"Write as if you were a critic: San Francisco\",\"max_tokens\": 100,"
            "\"temperature\": 0}'",
        ]
        for line in lines:
            self.console.print(f"  {line}", highlight=False, soft_wrap=True)
        if self.cluster is not None and self.cluster.gateway is not None:
            self.console.print(f"[bold]Dashboard[/] (live status, traffic and weights): "
                               f"{self.cluster.gateway.admin_url}/dashboard/", highlight=False, soft_wrap=True)

    async def stop(self) -> None:
        if self.cluster is not None:
            with self.console.status("stopping: gateway, pods, API server..."):
                await self.cluster.stop()
            self.cluster = None
            self.console.print("[green]✓[/] stopped; no process left running")
