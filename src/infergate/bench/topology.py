"""A local inference-gateway topology from real processes: simulators, EPPs and Envoy.

Used by the scheduling benchmark and the Envoy end-to-end tests. Every process is started
with ``asyncio`` subprocesses on loopback and stopped (SIGTERM, then SIGKILL) on exit.

The Envoy bootstrap is what the gateway serves: per *lane* a Gateway, an HTTPRoute and an
InferencePool with its EPP, translated by the gateway controller's translator into an IR and
by the production xDS translator into Envoy resources, written as static resources (routes
and endpoints inlined, no xDS server). A lane adds only what it tests
beyond that (a streamed request body, ``infergate bbr``, a subset hint, debug headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infergate.api import headers
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import DEFAULT_CONTROLLER_NAME, TranslatorOptions
from infergate.controller.translator import translate as translate_resources
from infergate.controller.translator.addresses import ClusterAllocator
from infergate.dataplane.binary import envoy_binary
from infergate.dataplane.xds_translator import EXT_PROC_FILTER, TranslateOptions, translate
from infergate.ir import DataplaneConfig, Endpoint
from infergate.util.net import async_connect_error, free_port
from infergate.util.procs import signal_group, spawn_logged, terminate
from infergate.util.wait import WaitTimeout, async_wait_until


@dataclass(frozen=True)
class Lane:
    """One Envoy listener in front of one pool, routed by one EPP."""

    name: str
    listen_port: int
    epp_port: int
    endpoints: tuple[str, ...]  # "ip:port" of the pool's pods
    fail_open: bool = False
    message_timeout_s: float = 5.0
    response_body_mode: str = "NONE"  # NONE | STREAMED | FULL_DUPLEX_STREAMED
    request_body_mode: str = "BUFFERED"  # BUFFERED | FULL_DUPLEX_STREAMED
    debug_headers: bool = False  # response headers x-epp-destination, x-upstream-host, x-model-name-seen
    bbr_port: int | None = None  # a body-based router (`infergate bbr`) ext_proc ahead of the EPP
    subset_hint: tuple[str, ...] | None = None  # set envoy.lb.subset_hint as a gateway would
    # the EPP Service's endpoints, each an EPP replica listening on epp_port (active-active: Envoy's
    # ext_proc cluster spreads the request streams over them, as over an EPP Deployment's pods)
    epp_hosts: tuple[str, ...] = ("127.0.0.1",)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports for servers (outside the ephemeral range: see ``free_port``)."""
    ports: list[int] = []
    for _ in range(count * 10):
        if len(ports) == count:
            break
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


class PortPool:
    """Hands out distinct free ports (a batch at a time)."""

    def __init__(self, batch: int = 16) -> None:
        self._batch = batch
        self._free: list[int] = []
        self._given: set[int] = set()

    def __call__(self) -> int:
        for _ in range(10):
            if not self._free:
                self._free = [p for p in free_ports(self._batch) if p not in self._given]
            if self._free:
                port = self._free.pop()
                self._given.add(port)
                return port
        raise RuntimeError("no free port found")


def _endpoint(hostport: str) -> Endpoint:
    host, port = hostport.rsplit(":", 1)
    return Endpoint(host, int(port))


def _socket(hostport: str) -> dict[str, Any]:
    host, port = hostport.rsplit(":", 1)
    return {"socket_address": {"address": host, "port_value": int(port)}}


# Bench-only response headers (Envoy format strings, which the production translator escapes).
_DEBUG_HEADERS = [
    {"header": {"key": "x-epp-destination", "value": f"%REQ({headers.DESTINATION_ENDPOINT})%"}},
    {"header": {"key": "x-upstream-host", "value": "%UPSTREAM_HOST%"}},
    {"header": {"key": "x-model-name-seen", "value": f"%REQ({headers.MODEL_NAME})%"}},
]


BENCH_NAMESPACE = "default"
BENCH_GATEWAY_CLASS = "infergate-bench"


def lane_resources(lane: Lane) -> list[dict[str, Any]]:
    """The lane as the Kubernetes objects a user would apply: a Gateway (listener ``http`` on
    the lane's port), an HTTPRoute sending ``/`` to an InferencePool, the pool's Ready Pods
    (one per endpoint, which share one port), and its EPP Service with an EndpointSlice."""
    ports = {_endpoint(e).port for e in lane.endpoints}
    if len(ports) != 1:
        raise ValueError(f"lane {lane.name}: the pool's endpoints must share one port, got {sorted(ports)}")
    ns, epp = BENCH_NAMESPACE, f"{lane.name}-epp"
    gateway_api = "gateway.networking.k8s.io/v1"
    pods = [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"{lane.name}-{i}", "namespace": ns, "labels": {"app": lane.name}},
         "status": {"podIP": _endpoint(e).address, "conditions": [{"type": "Ready", "status": "True"}]}}
        for i, e in enumerate(lane.endpoints)
    ]
    return [
        {"apiVersion": gateway_api, "kind": "GatewayClass", "metadata": {"name": BENCH_GATEWAY_CLASS},
         "spec": {"controllerName": DEFAULT_CONTROLLER_NAME}},
        {"apiVersion": gateway_api, "kind": "Gateway", "metadata": {"name": lane.name, "namespace": ns},
         "spec": {"gatewayClassName": BENCH_GATEWAY_CLASS,
                  "listeners": [{"name": "http", "port": lane.listen_port, "protocol": "HTTP"}]}},
        {"apiVersion": gateway_api, "kind": "HTTPRoute", "metadata": {"name": lane.name, "namespace": ns},
         "spec": {"parentRefs": [{"name": lane.name}],
                  "rules": [{"backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                              "name": lane.name}]}]}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
         "metadata": {"name": lane.name, "namespace": ns},
         "spec": {"selector": {"matchLabels": {"app": lane.name}}, "targetPorts": [{"number": ports.pop()}],
                  "endpointPickerRef": {"name": epp, "port": {"number": lane.epp_port},
                                        "failureMode": "FailOpen" if lane.fail_open else "FailClose"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": epp, "namespace": ns},
         "spec": {"ports": [{"port": lane.epp_port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": epp, "namespace": ns, "labels": {"kubernetes.io/service-name": epp}},
         "addressType": "IPv4", "ports": [{"port": lane.epp_port}], "endpoints": [{"addresses": [host]} for host in lane.epp_hosts]},
        *pods,
    ]


def lane_ir(lane: Lane) -> DataplaneConfig:
    """The IR the gateway controller's translator makes of ``lane_resources(lane)``, its
    listener bound to 127.0.0.1. Body-based routing is on, as for any Gateway, except where
    the lane routes by body itself (``bbr_port``) or streams the request body."""
    options = TranslatorOptions(addresses=ClusterAllocator(bind_address="127.0.0.1"),
                                body_based_routing=lane.bbr_port is None and lane.request_body_mode == "BUFFERED")
    result = translate_resources(Snapshot.of(lane_resources(lane)), options)
    pools = result.ir.pools
    if len(result.ir.listeners) != 1 or len(pools) != 1 or not pools[0].endpoints or pools[0].picker is None or not pools[0].picker.endpoints:
        statuses = {str(ref): status for ref, status in result.statuses.items()}
        raise RuntimeError(f"lane {lane.name}: the translator did not serve the lane's pool: {statuses}")
    return result.ir


def _epp_cluster_name(lane: Lane) -> str:
    return f"epp/{BENCH_NAMESPACE}/{lane.name}-epp/{lane.epp_port}"


def lane_options(lane: Lane, access_log: str | None = None) -> TranslateOptions:
    """The production translator's options for a lane (its EPP timeout and response body mode)."""
    return TranslateOptions(ext_proc_message_timeout_s=lane.message_timeout_s,
                            ext_proc_response_body_mode=lane.response_body_mode, access_log=access_log)


def _subset_filter(endpoints: Sequence[str]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.set_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config",
            "metadata": [{"metadata_namespace": headers.SUBSET_HINT_METADATA_NAMESPACE,
                          "value": {headers.DESTINATION_ENDPOINT_SUBSET: list(endpoints)}}],
        },
    }


def _bbr_filter(lane: Lane) -> dict[str, Any]:
    return {
        "name": "infergate.bbr",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": f"bbr-{lane.name}"}, "timeout": "10s"},
            "failure_mode_allow": False,
            "message_timeout": f"{lane.message_timeout_s}s",
            "processing_mode": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                                "response_header_mode": "SKIP", "response_body_mode": "NONE",
                                "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
        },
    }


def _add_lane_extras(lane: Lane, listener: dict[str, Any]) -> None:
    """What a lane tests beyond the production configuration, added to its translated listener:
    a streamed request body, body-based routing by ``infergate bbr``, a gateway's subset hint,
    and response headers naming the EPP's pick."""
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters: list[dict[str, Any]] = hcm["http_filters"]
    at = next(i for i, f in enumerate(filters) if f["name"] == EXT_PROC_FILTER)
    ext_proc = filters[at]["typed_config"]
    mode = ext_proc["processing_mode"]
    mode["request_body_mode"] = lane.request_body_mode
    if lane.request_body_mode == "FULL_DUPLEX_STREAMED":
        mode["request_trailer_mode"] = "SEND"
    if lane.response_body_mode == "FULL_DUPLEX_STREAMED":
        mode["response_trailer_mode"] = "SEND"
    if lane.subset_hint is not None:  # set just before the EPP, as a gateway would
        filters.insert(at, _subset_filter(lane.subset_hint))
        ext_proc["metadata_options"]["forwarding_namespaces"] = {"untyped": [headers.SUBSET_HINT_METADATA_NAMESPACE]}
    if lane.bbr_port:  # where body-based routing runs: right after the destination guard
        filters.insert(1, _bbr_filter(lane))
    if lane.debug_headers:
        for vhost in hcm["route_config"]["virtual_hosts"]:
            for route in vhost["routes"]:
                route["response_headers_to_add"] = copy.deepcopy(_DEBUG_HEADERS)


def _bbr_cluster(lane: Lane, epp_cluster: dict[str, Any]) -> dict[str, Any]:
    """``infergate bbr``'s cluster: the EPP cluster's settings, the BBR's address."""
    assert lane.bbr_port is not None
    name = f"bbr-{lane.name}"
    cluster = copy.deepcopy(epp_cluster)
    cluster["name"] = name
    cluster["load_assignment"] = {"cluster_name": name, "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": _socket(f"127.0.0.1:{lane.bbr_port}")}}]}]}
    return cluster


def envoy_bootstrap(lanes: Sequence[Lane], admin_port: int, *, access_log: str | None = None) -> dict[str, Any]:
    """A static Envoy bootstrap with one listener, pool cluster and EPP cluster per lane.

    Each lane's listener and clusters are what the gateway makes of the lane's Kubernetes
    objects (``lane_resources``): the controller's translator gives the IR (``lane_ir``), the
    xDS translator the Envoy resources; only the lane's test-only extras are added
    (``_add_lane_extras``). So benchmarks measure what users run.
    """
    listeners: list[dict[str, Any]] = []
    clusters: dict[str, dict[str, Any]] = {}
    for lane in lanes:
        static = translate(lane_ir(lane), options=lane_options(lane, access_log)).static_resources()
        for listener in static["listeners"]:
            _add_lane_extras(lane, listener)
            listeners.append(listener)
        for cluster in static["clusters"]:
            clusters.setdefault(cluster["name"], cluster)  # the shared no-EPP cluster once
        if lane.bbr_port:
            bbr = _bbr_cluster(lane, clusters[_epp_cluster_name(lane)])
            clusters[bbr["name"]] = bbr
    return {
        "admin": {"address": _socket(f"127.0.0.1:{admin_port}")},
        "static_resources": {"listeners": listeners, "clusters": list(clusters.values())},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "overload": {"global_downstream_max_connections": 100000}}}]},
    }


@dataclass
class ManagedProcess:
    """A subprocess in its own process group, stopped with SIGTERM (then SIGKILL) by ``stop``."""

    argv: list[str]
    name: str
    env: dict[str, str] | None = None
    log_path: Path | None = None
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def start(self) -> None:
        self.process = await spawn_logged(
            self.argv, self.log_path or Path(os.devnull), env=self.env, stdout_pipe=True
        )

    async def read_ready_line(self, prefix: str, timeout: float) -> str:
        """The first stdout line starting with ``prefix``; fails if the process exits first."""
        assert self.process is not None and self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        await self.process.wait()
                        raise RuntimeError(
                            f"{self.name} exited ({self.process.returncode}) before ready{self._log_tail()}"
                        )
                    text = line.decode().strip()
                    if text.startswith(prefix):
                        break
        except TimeoutError:
            raise TimeoutError(f"{self.name} did not print {prefix!r} within {timeout}s{self._log_tail()}") from None
        # keep draining stdout so the child never blocks on a full pipe
        asyncio.get_running_loop().create_task(self._drain())
        return text

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process is not None and self.process.stdout is not None
            while await self.process.stdout.read(65536):
                pass

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return "\n" + self.log_path.read_text(errors="replace")[-3000:]
        return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the process and what it started (its group), SIGKILL after ``timeout``; its exit code.

        A stop that is itself cancelled (a second Ctrl-C, the grace of a stopped command over)
        kills the group at once."""
        if self.process is None:
            return None
        try:
            return await terminate(self.process, timeout, name=self.name)
        except asyncio.CancelledError:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL to the process and its group, now (nothing if it has exited)."""
        if self.process is not None and self.process.returncode is None:
            signal_group(self.process.pid, signal.SIGKILL)


async def _wait_ports(process: ManagedProcess, ports: Sequence[int], timeout: float, host: str = "127.0.0.1") -> None:
    """Wait until every port accepts on ``host``; fail at once (with the log) if the process exits."""
    waiting = list(ports)

    async def listening() -> bool:
        while waiting:
            if not process.running:
                raise RuntimeError(f"{process.name} exited before listening on {waiting[0]}{process._log_tail()}")
            if await async_connect_error(host, waiting[0]) is not None:
                return False
            waiting.pop(0)
        return True

    try:
        _: bool = await async_wait_until(listening, timeout, what=f"{process.name} to listen")
    except WaitTimeout:
        raise TimeoutError(f"{process.name}: port {waiting[0]} not open after {timeout}s"
                           f"{process._log_tail()}") from None


def python_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "infergate", *args]


class SimReplicas:
    """``infergate sim`` replicas in one subprocess (``ready <endpoints...>`` contract)."""

    def __init__(self, addresses: Sequence[str], port: int, *, time_scale: float, model: str,
                 workdir: Path, extra: Sequence[str] = ()) -> None:
        first = addresses[0]
        self.expected = [f"{a}:{port}" for a in addresses]
        self.process = ManagedProcess(
            python_argv("sim", "--replicas", str(len(addresses)), "--address", first, "--port", str(port),
                        "--time-scale", str(time_scale), "--model", model, *extra),
            name="simulator", log_path=workdir / "sim.log",
        )
        self.endpoints: list[str] = []

    async def start(self, timeout: float = 30.0) -> list[str]:
        await self.process.start()
        line = await self.process.read_ready_line("ready", timeout)
        self.endpoints = line.split()[1:] or self.expected
        return self.endpoints

    async def stop(self) -> None:
        await self.process.stop()


def static_pool_file(path: Path, *, pool_name: str, endpoints: Sequence[str],
                     objectives: Sequence[tuple[str, int]] = (), namespace: str = "default",
                     labels: Sequence[Mapping[str, str]] = ()) -> Path:
    """The EPP's ``--static-file`` for ``endpoints`` (one pod per "ip:port"); ``labels``: the
    pods' labels, in the same order (none by default)."""
    port = int(endpoints[0].rsplit(":", 1)[1])
    data = {
        "pool": {"name": pool_name, "namespace": namespace, "targetPorts": [port]},
        "objectives": [{"name": name, "priority": priority} for name, priority in objectives],
        "endpoints": [
            {"name": f"pod-{i}", "address": e.rsplit(":", 1)[0], "port": int(e.rsplit(":", 1)[1]), "ready": True,
             **({"labels": dict(labels[i])} if i < len(labels) and labels[i] else {})}
            for i, e in enumerate(endpoints)
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class EPPProcess:
    """``infergate epp`` with a static pool file; ready when it prints ``ready ...``."""

    def __init__(self, *, pool_file: Path, workdir: Path, name: str = "epp", config_file: Path | None = None,
                 refresh_metrics_interval: str = "50ms", extra: Sequence[str] = (),
                 ports: PortPool | None = None, host: str = "127.0.0.1",
                 same_ports_as: EPPProcess | None = None) -> None:
        """``host``: the loopback address every port listens on; ``same_ports_as``: another
        replica's EPP whose port numbers this one uses (on its own ``host``, as pods do)."""
        self.grpc_port: int
        self.health_port: int
        self.metrics_port: int
        if same_ports_as is not None:
            self.grpc_port, self.health_port = same_ports_as.grpc_port, same_ports_as.health_port
            self.metrics_port = same_ports_as.metrics_port
        else:
            ports = ports or PortPool()
            self.grpc_port, self.health_port, self.metrics_port = ports(), ports(), ports()
        self.host = host
        argv = python_argv(
            "epp", "--pool-name", "pool", "--static-file", str(pool_file), "--host", host,
            "--grpc-port", str(self.grpc_port), "--grpc-health-port", str(self.health_port),
            "--metrics-port", str(self.metrics_port), "--refresh-metrics-interval", refresh_metrics_interval,
            *(["--config-file", str(config_file)] if config_file else []), *extra,
        )
        self.process = ManagedProcess(argv, name=name, log_path=workdir / f"{name}.log")

    async def start(self, timeout: float = 30.0) -> None:
        await self.process.start()
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float) -> None:
        await _wait_ports(self.process, [self.metrics_port, self.grpc_port], timeout, host=self.host)

    async def stop(self) -> int | None:
        return await self.process.stop()


class EnvoyProcess:
    """Envoy with a generated static bootstrap; ready when every lane's listener accepts."""

    def __init__(self, lanes: Sequence[Lane], *, workdir: Path, envoy_bin: str | None = None,
                 concurrency: int = 1, ports: PortPool | None = None) -> None:
        self.lanes = list(lanes)
        self.admin_port = (ports or PortPool())()
        self.bootstrap_path = workdir / "envoy.yaml"
        bootstrap = envoy_bootstrap(self.lanes, self.admin_port, access_log=str(workdir / "envoy-access.log"))
        self.bootstrap_path.write_text(json.dumps(bootstrap, indent=1))
        self.process = ManagedProcess(
            [envoy_bin or envoy_binary(), "-c", str(self.bootstrap_path), "--concurrency", str(concurrency),
             "--use-dynamic-base-id", "--log-level", "warning", "--drain-time-s", "1", "--parent-shutdown-time-s", "2"],
            name="envoy", log_path=workdir / "envoy.log",
        )

    async def start(self, timeout: float = 30.0) -> None:
        await self.process.start()
        await _wait_ports(self.process, [lane.listen_port for lane in self.lanes], timeout)

    def log_text(self) -> str:
        path = self.process.log_path
        return path.read_text(errors="replace") if path and path.exists() else ""

    async def stop(self) -> int | None:
        return await self.process.stop()


def workdir(prefix: str = "infergate-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR")))
