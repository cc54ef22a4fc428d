"""The routers under test, each started in front of a fresh simulated pool.

- ``infergate-<profile>``: every EPP scheduling preset, through a real Envoy whose listener and
  clusters come from the production translator (``infergate.bench.topology``);
- ``sglang-cache-aware``, ``sglang-round-robin``: PyPI ``sglang-router``;
- ``vllm-router-cache-aware``: PyPI ``vllm-router`` (the Rust vllm-project/router);
- ``envoy-round-robin``, ``envoy-least-request``: Envoy alone, a static cluster of the replicas;
- ``oracle``: ``infergate.bench.peers.oracle``, the bound.

Peers run from their own virtual environments (``.bench-venvs/<dist>``, made by ``make bench``);
``peer_status`` says whether one is usable and why not.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.bench.topology import (
    EnvoyProcess,
    EPPProcess,
    Lane,
    ManagedProcess,
    PortPool,
    _wait_ports,
    static_pool_file,
)
from infergate.dataplane.binary import envoy_binary

VENVS = Path(os.environ.get("INFERGATE_BENCH_VENVS", ".bench-venvs"))
# the EPP presets as routers; `predicted-latency` is left out: it is `default` (issue 16)
EPP_PROFILES = ("default", "upstream-v1.0", "prefix-load", "v0.3.0", "random", "round-robin")
PEER_ROUTERS = ("sglang-cache-aware", "sglang-round-robin", "vllm-router-cache-aware")
ENVOY_ROUTERS = ("envoy-round-robin", "envoy-least-request")
ALL_ROUTERS = (*(f"infergate-{p}" for p in EPP_PROFILES), *PEER_ROUTERS, *ENVOY_ROUTERS, "oracle")
MAX_EPP_REPLICAS = 8
PEER_PACKAGES = {"sglang-router": ("sglang-router", "0.3.2"), "vllm-router": ("vllm-router", "0.1.17")}


@dataclass
class RunContext:
    endpoints: list[str]  # "ip:port" of the replicas
    workdir: Path
    ports: PortPool
    time_scale: float
    seed: int
    objectives: tuple[tuple[str, int], ...] = ()
    endpoint_labels: tuple[Mapping[str, str], ...] = ()  # the replicas' pod labels, in order (EPP pool file)


class Router:
    """A router process (or processes) for one run: ``start`` returns the base URL."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self.processes: list[ManagedProcess] = []

    async def start(self, ctx: RunContext) -> str:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        return {f"{self.name}:{p.name}": p.process.pid for p in self.processes if p.process is not None}

    def log_text(self) -> str:
        return "".join(p.log_path.read_text(errors="replace") for p in self.processes
                       if p.log_path is not None and p.log_path.exists())

    async def stop(self) -> None:
        for process in reversed(self.processes):
            await process.stop()


def epp_replica_hosts(replicas: int) -> tuple[str, ...]:
    """The loopback addresses of ``replicas`` EPP replicas (one per "pod", all on the same ports)."""
    if not 1 <= replicas <= MAX_EPP_REPLICAS:
        raise ValueError(f"EPP replicas: {replicas} is not in 1..{MAX_EPP_REPLICAS}")
    return tuple(f"127.0.0.{i + 1}" for i in range(replicas))


class InfergateRouter(Router):
    """Envoy + the EPP; with ``epp_replicas`` > 1, that many EPPs active-active behind the EPP
    Service (each on its own loopback address, the same ports), every one scraping the pool and
    keeping its own pick-time state, Envoy spreading the ext_proc streams over them."""

    def __init__(self, profile: str, envoy_bin: str | None = None, epp_args: Sequence[str] = (),
                 epp_replicas: int = 1, pick_sharing: bool = False) -> None:
        super().__init__(f"infergate-{profile}")
        self.profile = profile
        self.envoy_bin = envoy_bin
        self.epp_args = tuple(epp_args)
        self.epp_hosts = epp_replica_hosts(epp_replicas)
        self.pick_sharing = pick_sharing  # the replicas share their picks' prefix blocks (epp.pick_sharing)

    async def start(self, ctx: RunContext) -> str:
        from infergate.epp.scheduling.config import preset_text  # the EPP's presets, read at run time

        config = ctx.workdir / "epp-config.yaml"
        config.write_text(preset_text(self.profile))
        pool = static_pool_file(ctx.workdir / "pool.yaml", pool_name="pool", endpoints=ctx.endpoints,
                                objectives=ctx.objectives, labels=ctx.endpoint_labels)
        refresh_ms = max(1, round(50 / ctx.time_scale))
        sharing: list[str] = []
        if self.pick_sharing:
            port = ctx.ports()
            sharing = ["--pick-sharing-port", str(port),
                       "--pick-sharing-peers", ",".join(f"{host}:{port}" for host in self.epp_hosts)]
        first: EPPProcess | None = None
        for i, host in enumerate(self.epp_hosts):
            epp = EPPProcess(pool_file=pool, workdir=ctx.workdir, config_file=config, name=f"epp-{i}" if i else "epp",
                             refresh_metrics_interval=f"{refresh_ms}ms", ports=ctx.ports, host=host,
                             same_ports_as=first,
                             extra=["--seed", str(ctx.seed + i), "--metrics-staleness-threshold",
                                    f"{max(0.05, 2.0 / ctx.time_scale):.3f}s", *sharing, *self.epp_args])
            epp.process.env = {**os.environ,
                               "SD_METRICS_STALENESS_THRESHOLD": f"{max(0.05, 0.2 / ctx.time_scale):.3f}s"}
            self.processes.append(epp.process)
            await epp.start()
            first = first or epp
        assert first is not None
        lane = Lane(self.name, ctx.ports(), first.grpc_port, tuple(ctx.endpoints), message_timeout_s=10.0,
                    epp_hosts=self.epp_hosts)
        envoy = EnvoyProcess([lane], workdir=ctx.workdir, envoy_bin=self.envoy_bin, ports=ctx.ports)
        self.processes.append(envoy.process)
        await envoy.start()
        return f"http://127.0.0.1:{lane.listen_port}"


def envoy_only_bootstrap(endpoints: Sequence[str], listen_port: int, admin_port: int, policy: str) -> dict[str, Any]:
    """Envoy alone: one listener routing everything to a static cluster of the replicas."""
    def socket(host: str, port: int) -> dict[str, Any]:
        return {"socket_address": {"address": host, "port_value": port}}

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "pool", "timeout": "0s"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    thresholds = {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}
    return {
        "admin": {"address": socket("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [{"name": "bench", "address": socket("127.0.0.1", listen_port), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [{
                "name": "pool", "type": "STATIC", "connect_timeout": "5s", "lb_policy": policy,
                "circuit_breakers": {"thresholds": [thresholds]},
                "load_assignment": {"cluster_name": "pool", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": socket(e.rsplit(":", 1)[0], int(e.rsplit(":", 1)[1]))}}
                    for e in endpoints]}]},
            }],
        },
    }


class EnvoyOnlyRouter(Router):
    def __init__(self, policy: str, envoy_bin: str | None = None) -> None:
        super().__init__(f"envoy-{policy.lower().replace('_', '-')}")
        self.policy = policy
        self.envoy_bin = envoy_bin

    async def start(self, ctx: RunContext) -> str:
        port, admin = ctx.ports(), ctx.ports()
        path = ctx.workdir / "envoy-only.json"
        path.write_text(json.dumps(envoy_only_bootstrap(ctx.endpoints, port, admin, self.policy), indent=1))
        process = ManagedProcess([self.envoy_bin or envoy_binary(), "-c", str(path), "--concurrency", "1",
                                  "--use-dynamic-base-id", "--log-level", "warning"],
                                 name="envoy", log_path=ctx.workdir / "envoy.log")
        self.processes.append(process)
        await process.start()
        await _wait_ports(process, [port], 30.0)
        return f"http://127.0.0.1:{port}"


def peer_python(dist_dir: str) -> Path:
    return VENVS / dist_dir / "bin" / "python"


def peer_status(dist_dir: str) -> str | None:
    """None when the peer's venv is usable, else why not (the report lists it as skipped)."""
    python = peer_python(dist_dir)
    if not python.exists():
        return f"not installed: {VENVS / dist_dir} is missing (make bench creates it)"
    site = next((VENVS / dist_dir / "lib").glob("python*/site-packages"), None)
    package = "sglang_router" if dist_dir == "sglang-router" else "vllm_router"
    if site is None or not (site / package / "launch_router.py").exists():
        return f"not installed: {package}.launch_router is missing in {VENVS / dist_dir} (its pip install failed?)"
    if dist_dir == "vllm-router" and not list(site.glob("vllm_router_rs*.so")):
        # PyPI's vllm-router is the Rust vllm-project/router; vllm-project/production-stack's
        # Python router uses the same distribution name. The Rust one ships vllm_router_rs.
        return "the installed vllm-router is not the Rust vllm-project/router (no vllm_router_rs module)"
    return None


class LoggedProcess(ManagedProcess):
    """A process whose stdout goes to its log as well (the Rust routers log to stdout)."""

    async def start(self) -> None:
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(*self.argv, stdout=log, stderr=log, env=self.env,
                                                                start_new_session=True)


class PeerRouter(Router):
    """sglang-router or vllm-router in their own venvs, retries and circuit breakers off."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dist = "sglang-router" if name.startswith("sglang") else "vllm-router"
        self.policy = "cache_aware" if name.endswith("cache-aware") else "round_robin"

    async def start(self, ctx: RunContext) -> str:
        port, prom = ctx.ports(), ctx.ports()
        urls = [f"http://{e}" for e in ctx.endpoints]
        python = str(peer_python(self.dist))
        module = "sglang_router.launch_router" if self.dist == "sglang-router" else "vllm_router.launch_router"
        argv = [python, "-m", module, "--worker-urls", *urls, "--policy", self.policy,
                "--host", "127.0.0.1", "--port", str(port), "--prometheus-host", "127.0.0.1",
                "--prometheus-port", str(prom), "--worker-startup-check-interval", "1",
                "--disable-retries", "--disable-circuit-breaker", "--log-level", "info"]
        process = LoggedProcess(argv, name=self.dist, log_path=ctx.workdir / f"{self.dist}.log")
        process.env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        self.processes.append(process)
        await process.start()
        await _wait_ports(process, [port], 60.0)
        return f"http://127.0.0.1:{port}"


class OracleRouter(Router):
    def __init__(self) -> None:
        super().__init__("oracle")

    async def start(self, ctx: RunContext) -> str:
        port = ctx.ports()
        argv = [sys.executable, "-m", "infergate.bench.peers.oracle", "--port", str(port), "--seed", str(ctx.seed)]
        for e in ctx.endpoints:
            argv += ["--backend", f"http://{e}"]
        process = ManagedProcess(argv, name="oracle", log_path=ctx.workdir / "oracle.log")
        self.processes.append(process)
        await process.start()
        await process.read_ready_line("ready", 30.0)
        return f"http://127.0.0.1:{port}"


def make_router(name: str, envoy_bin: str | None = None, epp_args: Sequence[str] = (), epp_replicas: int = 1,
                pick_sharing: bool = False) -> Router:
    """``epp_args``, ``epp_replicas``, ``pick_sharing``: extra ``infergate epp`` flags, the number of
    EPPs and whether they share their picks, for an infergate router (ignored by the others)."""
    if name.startswith("infergate-") and name[len("infergate-"):] in EPP_PROFILES:
        return InfergateRouter(name[len("infergate-"):], envoy_bin, epp_args, epp_replicas, pick_sharing)
    if name == "envoy-round-robin":
        return EnvoyOnlyRouter("ROUND_ROBIN", envoy_bin)
    if name == "envoy-least-request":
        return EnvoyOnlyRouter("LEAST_REQUEST", envoy_bin)
    if name in PEER_ROUTERS:
        return PeerRouter(name)
    if name == "oracle":
        return OracleRouter()
    raise KeyError(f"unknown router {name!r} (known: {', '.join(ALL_ROUTERS)})")


def skip_reason(name: str) -> str | None:
    if name in PEER_ROUTERS:
        return peer_status("sglang-router" if name.startswith("sglang") else "vllm-router")
    return None
