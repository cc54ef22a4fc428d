"""``infergate serve``: simulators (``--sim N``), one EPP per pool, and the gateway, on this machine.

The gateway is the production one: the objects of ``serve.manifests`` are written to a
directory that the controller's ``FileProvider`` reads; the translator makes the IR, the data
plane serves it to a real Envoy over xDS. Each pool's EPP is ``infergate epp --static-file``.
A pool file given with ``--pool`` is read by its EPP directly (re-read on change) and watched
here too, so that the gateway's objects (routes by model, pods) follow it.

Everything started is stopped on SIGINT/SIGTERM (or on a failure while starting), and the
stop is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from infergate.controller.providers.file import FileProvider
from infergate.controller.runner import Reconciler
from infergate.controller.translator import TranslatorOptions
from infergate.controller.translator.addresses import ClusterAllocator
from infergate.dashboard.app import DashboardApp, DashboardServer
from infergate.dashboard.readers import GatewayViewReader
from infergate.dashboard.series import Sampler
from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.ir import Endpoint
from infergate.serve.children import Child, ChildError
from infergate.serve.health import check_all
from infergate.serve.manifests import GATEWAY_NAME, EPPPorts, render
from infergate.serve.members import MemberApplier, pool_key
from infergate.serve.spec import (
    EndpointSpec,
    PoolSpec,
    SpecError,
    check_pools,
    endpoints_pool,
    load_pool_file,
)
from infergate.serve.state import ServedPool, ServeState, StateFileError, read_state, write_state
from infergate.util.clock import utc_now
from infergate.util.net import async_wait_for_port, free_port, port_is_free, random_loopback_block
from infergate.util.procs import pid_alive

log = logging.getLogger(__name__)

Printer = Callable[[str], None]


@dataclass(frozen=True)
class ServeConfig:
    endpoints: tuple[str, ...] = ()
    pool_files: tuple[Path, ...] = ()
    sim: int = 0
    model: str | None = None
    pool_name: str = "serve"
    pool_namespace: str = "default"
    profile: str = "default"  # the EPP's scheduling preset, unless config_file/config_text
    config_file: str | None = None
    config_text: str | None = None
    refresh_metrics_interval: str = "50ms"
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    failure_mode: str = "FailClose"
    epp_args: tuple[str, ...] = ()  # more `infergate epp` flags, passed as they are
    sim_time_scale: float = 1.0
    sim_model: str = "meta-llama/Llama-3.1-8B-Instruct"
    state_file: Path | None = None
    work_dir: Path | None = None
    poll_interval: float = 0.5
    start_timeout: float = 60.0
    health_timeout: float = 3.0
    envoy_log_level: str = "warning"
    dashboard_port: int | None = 0  # the live dashboard's port (0: any free one; None: no dashboard)
    dashboard_interval: float = 2.0  # its sampling window, seconds


@dataclass
class _ServedPool:
    spec: PoolSpec
    epp: Child
    ports: EPPPorts
    static_file: Path


@dataclass
class _Running:
    work_dir: Path
    children: list[Child] = field(default_factory=list)
    pools: list[_ServedPool] = field(default_factory=list)
    port: int = 0


def _parse_ready_ports(line: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in line.split()[1:]:
        key, _, value = item.partition("=")
        if value.isdigit():
            ports[key] = int(value)
    return ports


def _endpoint_static_file(path: Path, pool: PoolSpec) -> Path:
    data: dict[str, Any] = {
        "pool": {"name": pool.name, "namespace": pool.namespace, "group": pool.group,
                 "targetPorts": [pool.endpoints[0].port]},
        "endpoints": [{"name": f"{pool.name}-{i}", "address": e.address, "port": e.port, "ready": True}
                      for i, e in enumerate(pool.endpoints)],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Server:
    """One ``infergate serve`` run; ``run`` returns the exit code."""

    def __init__(self, config: ServeConfig, out: Printer) -> None:
        self.config = config
        self.out = out
        self.state: ServeState | None = None
        self._run: _Running | None = None
        self._manifests: Path | None = None
        self._stamps: dict[Path, tuple[int, int]] = {}
        self._applier: MemberApplier | None = None
        self._envoy_started = False
        self._dashboard: DashboardServer | None = None

    # -- starting ---------------------------------------------------------------------------

    async def _start_sim(self, run: _Running) -> list[str]:
        config = self.config
        port = free_port()
        first = random_loopback_block(config.sim, port)[0]
        sim = Child.infergate("simulator", [
            "sim", "--replicas", str(config.sim), "--address", first, "--port", str(port),
            "--model", config.model or config.sim_model, "--time-scale", str(config.sim_time_scale)],
            run.work_dir / "sim.log")
        run.children.append(sim)
        self.out(f"starting {config.sim} simulator replica(s) (infergate sim, model {config.model or config.sim_model})")
        line = await sim.start("ready", config.start_timeout)
        return [f"http://{hostport}" for hostport in line.split()[1:]]

    def _file_pools(self) -> list[PoolSpec]:
        pools = []
        for path in self.config.pool_files:
            self._stamps[path] = _stamp(path)
            pools.append(load_pool_file(path))
        return pools

    def _pools(self, sim_urls: list[str], file_pools: list[PoolSpec], *, before_sims: bool = False) -> list[PoolSpec]:
        """The pools to serve (``before_sims``: the check before the simulators exist)."""
        config = self.config
        pools: list[PoolSpec] = []
        urls = [*config.endpoints, *sim_urls]
        if urls or config.sim:
            model = config.model or (config.sim_model if config.sim and not config.endpoints else None)
            pools.append(endpoints_pool(urls, name=config.pool_name, namespace=config.pool_namespace, model=model))
        if not pools and not file_pools:
            raise SpecError("nothing to serve: give --endpoint URL, --pool FILE or --sim N")
        pools.extend(file_pools)
        check_pools(pools)
        if not before_sims:
            for pool in pools:
                if not pool.endpoints:
                    self.out(f"warning: pool {pool.namespace}/{pool.name} has no ready endpoint yet")
        return pools

    def _epp_argv(self, pool: PoolSpec, static_file: Path) -> list[str]:
        config = self.config
        argv = ["epp", "--pool-name", pool.name, "--pool-namespace", pool.namespace, "--pool-group", pool.group,
                "--static-file", str(static_file), "--host", "127.0.0.1", "--grpc-port", "0",
                "--grpc-health-port", "0", "--metrics-port", "0",
                "--refresh-metrics-interval", config.refresh_metrics_interval]
        if config.config_file:
            argv += ["--config-file", config.config_file]
        elif config.config_text:
            argv += ["--config-text", config.config_text]
        else:
            # function-level: the scheduling presets pull in the scheduler's plugins
            from infergate.epp.scheduling.config import preset_text

            argv += ["--config-text", preset_text(config.profile)]
        return [*argv, *config.epp_args]

    async def _start_epp(self, run: _Running, pool: PoolSpec) -> _ServedPool:
        static_file = pool.source_file or _endpoint_static_file(run.work_dir / f"pool-{pool.name}.yaml", pool)
        epp = Child.infergate(f"EPP {pool.namespace}/{pool.name}", self._epp_argv(pool, static_file),
                              run.work_dir / f"epp-{pool.name}.log")
        run.children.append(epp)
        ports = _parse_ready_ports(await epp.start("ready", self.config.start_timeout))
        served = _ServedPool(pool, epp, EPPPorts(grpc=ports["grpc"], metrics=ports["metrics"]), static_file)
        self.out(f"pool {pool.namespace}/{pool.name}: {len(pool.endpoints)} endpoint(s), "
                 f"models {', '.join(pool.models) or '(any)'}; EPP grpc=127.0.0.1:{served.ports.grpc} "
                 f"metrics=http://127.0.0.1:{served.ports.metrics}/metrics")
        return served

    def _write_manifests(self, run: _Running) -> None:
        assert self._manifests is not None
        objects = render([p.spec for p in run.pools], [p.ports for p in run.pools], port=run.port,
                         failure_mode=self.config.failure_mode)
        target = self._manifests / "serve.yaml"
        tmp = self._manifests / ".serve.yaml.tmp"  # hidden: the provider skips it
        tmp.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        os.replace(tmp, target)

    async def _health(self, pools: list[PoolSpec]) -> None:
        endpoints: list[EndpointSpec] = [e for p in pools for e in p.endpoints]
        self.out(f"checking {len(endpoints)} endpoint(s)")
        results = await check_all(endpoints, self.config.health_timeout)
        for result in results:
            self.out(result.line())
        bad = sum(not r.healthy for r in results)
        if bad:
            self.out(f"warning: {bad} endpoint(s) unhealthy; the EPP sends requests only to endpoints "
                     "whose metrics it can read")

    # -- watching pool files -------------------------------------------------------------------

    async def _watch_pool_files(self, run: _Running) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            changed = False
            for i, served in enumerate(run.pools):
                path = served.spec.source_file
                if path is None:
                    continue
                stamp = _stamp(path)
                if stamp == self._stamps.get(path):
                    continue
                self._stamps[path] = stamp
                try:
                    spec = load_pool_file(path)
                    check_pools([p.spec if j != i else spec for j, p in enumerate(run.pools)])
                except SpecError as exc:
                    self.out(f"pool file not applied (the previous content keeps serving): {exc}")
                    continue
                known = {e.hostport for e in served.spec.endpoints}
                run.pools[i] = replace(served, spec=spec)
                changed = True
                self.out(f"pool {spec.namespace}/{spec.name} re-read from {path}: "
                         f"{', '.join(e.hostport for e in spec.endpoints) or 'no endpoints'}")
                new = [e for e in spec.endpoints if e.hostport not in known]
                if new:
                    for result in await check_all(new, self.config.health_timeout):
                        self.out(result.line())
            if changed:
                self._write_manifests(run)
                self._write_state(run)
                if self._applier is not None:
                    await self._applier.reapply()

    def _members(self) -> dict[str, tuple[Endpoint, ...]]:
        run = self._run
        assert run is not None
        return {pool_key(p.spec.group, p.spec.namespace, p.spec.name):
                tuple(Endpoint(e.address, e.port) for e in p.spec.endpoints) for p in run.pools}

    async def _watch_children(self, run: _Running) -> None:
        """Return when a process serve started exits by itself (serve then stops the rest)."""
        waits = {asyncio.create_task(c.process.wait()): c for c in run.children if c.process is not None}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        child = waits[next(iter(done))]
        raise ChildError(f"{child.name} (pid {child.pid}) exited with code {child.process.returncode if child.process else '?'}; "
                         f"log {child.log_path}:\n{child.log_tail(1500)}")

    # -- state ----------------------------------------------------------------------------------

    def _client_host(self) -> str:
        """Where a client on this machine reaches the gateway."""
        return "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host

    def _url(self, run: _Running) -> str:
        return f"http://{self._client_host()}:{run.port}"

    def _write_state(self, run: _Running, dataplane: Dataplane | None = None) -> None:
        assert self._manifests is not None
        previous = self.state
        admin = (f"{dataplane.admin_address[0]}:{dataplane.admin_address[1]}" if dataplane is not None
                 else previous.envoy_admin if previous else "")
        self.state = ServeState(
            url=self._url(run), pid=os.getpid(), work_dir=str(run.work_dir), manifests_dir=str(self._manifests),
            status_file=str(run.work_dir / "status.yaml"), envoy_admin=admin,
            started_at=previous.started_at if previous else utc_now(),
            pools=[ServedPool(name=p.spec.name, namespace=p.spec.namespace, group=p.spec.group,
                              models=list(p.spec.models), endpoints=[e.base_url for e in p.spec.endpoints],
                              epp_grpc=p.ports.grpc, epp_metrics=p.ports.metrics,
                              source_file=str(p.spec.source_file) if p.spec.source_file else None)
                   for p in run.pools],
        )
        if self.config.state_file is not None:
            write_state(self.config.state_file, self.state)

    # -- the run --------------------------------------------------------------------------------

    def _preflight(self) -> None:
        """What can be refused before anything starts: a busy port, a state file in use."""
        config = self.config
        if config.port and not port_is_free(config.host, config.port):
            raise SpecError(f"--port {config.port}: {config.host}:{config.port} is already in use "
                            "(--port 0 picks a free one)")
        if config.state_file is not None and config.state_file.exists():
            try:
                other = read_state(config.state_file)
            except StateFileError:
                return  # a stale or foreign file: ours replaces it
            if other.pid != os.getpid() and pid_alive(other.pid):
                raise SpecError(f"--state-file {config.state_file}: another infergate serve (pid {other.pid}, "
                                f"{other.url}) uses it; give this one its own --state-file")

    async def _serve(self, run: _Running) -> None:
        config = self.config
        self._preflight()
        file_pools = self._file_pools()
        self._pools([], file_pools, before_sims=True)  # URLs, files and models checked before anything starts
        sim_urls = await self._start_sim(run) if config.sim else []
        pools = self._pools(sim_urls, file_pools)
        await self._health(pools)
        for pool in pools:
            run.pools.append(await self._start_epp(run, pool))
        run.port = config.port or free_port(self._client_host())
        self._manifests = run.work_dir / "manifests"
        self._manifests.mkdir(parents=True, exist_ok=True)
        self._write_manifests(run)

        provider = FileProvider(self._manifests, poll_interval=config.poll_interval,
                                status_file=run.work_dir / "status.yaml")
        options = TranslatorOptions(addresses=ClusterAllocator(external_address=self._client_host(),
                                                               bind_address=config.host))
        dp_options = DataplaneOptions(work_dir=run.work_dir / "envoy", log_level=config.envoy_log_level,
                                      start_timeout_s=config.start_timeout)
        async with Dataplane(dp_options) as dataplane:
            self._envoy_started = True
            await provider.start()
            watcher: asyncio.Task[None] | None = None
            reconciling: asyncio.Task[None] | None = None
            try:
                self._applier = MemberApplier(dataplane, self._members)
                reconciler = Reconciler(provider, self._applier, options)
                await reconciler.reconcile_once()
                problem = _gateway_problem(provider)
                if problem:
                    raise SpecError(f"the gateway is not programmed: {problem}")
                await async_wait_for_port(self._client_host(), run.port, config.start_timeout)
                if config.dashboard_port is not None:
                    reader = GatewayViewReader(provider.snapshot, provider.statuses, f"infergate serve at {self._url(run)}")
                    sampler = Sampler.for_reader(reader, interval=config.dashboard_interval)
                    self._dashboard = DashboardServer(DashboardApp(sampler, title="infergate serve"),
                                                      config.host, config.dashboard_port)
                    await self._dashboard.start()
                reconciling = asyncio.create_task(reconciler.run(), name="serve-reconcile")
                watcher = asyncio.create_task(self._watch_pool_files(run), name="serve-pool-files")
                self._write_state(run, dataplane)
                self._announce(run)
                await self._watch_children(run)  # until a child exits, or cancelled by a signal
            finally:
                for task in (watcher, reconciling):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if self._dashboard is not None:
                    await self._dashboard.stop()
                await provider.stop()
                self.out("stopping Envoy")

    def _announce(self, run: _Running) -> None:
        url = self._url(run)
        models = [m for p in run.pools for m in p.spec.models]
        model = models[0] if models else "MODEL"
        self.out(f"infergate serve ready: OpenAI base URL {url}/v1")
        self.out(f"  curl {url}/v1/completions -H 'Content-Type: application/json' "
                 f"-d '{{\"model\": \"{model}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'")
        if self._dashboard is not None:
            self.out(f"  dashboard: {self._dashboard.url}")
        if self.config.state_file is not None:
            self.out(f"  infergate status --serve {self.config.state_file}")
        self.out("Ctrl-C stops the gateway, the EPPs and the simulators it started.")

    async def run(self) -> int:
        config = self.config
        tmp = None
        if config.work_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="infergate-serve-")
        run = _Running(Path(tmp.name) if tmp else Path(config.work_dir or "."))
        run.work_dir.mkdir(parents=True, exist_ok=True)
        self._run = run
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            if not received and task is not None:
                received.append(sig)
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        code = 0
        try:
            await self._serve(run)
        except asyncio.CancelledError:
            if not received:
                raise
            self.out(f"\nreceived {received[0].name}: stopping")
        except (SpecError, ChildError) as exc:
            self.out(f"infergate serve: {exc}")
            code = 1
        except Exception as exc:  # e.g. Envoy that does not start: said in one line, details in the log
            log.debug("infergate serve failed", exc_info=True)
            self.out(f"infergate serve: {type(exc).__name__}: {exc}")
            code = 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self._stop_children(run)
            if config.state_file is not None and self.state is not None:  # ours (written when ready)
                with contextlib.suppress(FileNotFoundError):
                    config.state_file.unlink()
            if tmp is not None:
                tmp.cleanup()
        return code

    async def _stop_children(self, run: _Running) -> None:
        started = [c for c in run.children if c.process is not None]
        if started:
            self.out("stopping " + ", ".join(f"{c.name} (pid {c.pid})" for c in started))
        await asyncio.gather(*(c.stop() for c in reversed(started)))
        stopped = (["Envoy"] if self._envoy_started else []) + [c.name for c in started]
        self.out(f"stopped everything infergate serve started: {', '.join(stopped) or 'nothing was running'}")


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _gateway_problem(provider: FileProvider) -> str | None:
    """Why the serve Gateway is not Programmed=True (None when it is); other objects' errors too."""
    errors = "; ".join(provider.errors.values())
    for ref, status in provider.statuses().items():
        if ref.kind == "Gateway" and ref.name == GATEWAY_NAME:
            for cond in status.get("conditions", []):
                if cond.get("type") == "Programmed":
                    return None if cond.get("status") == "True" else f"{cond.get('reason')}: {cond.get('message')}"
    return errors or "no status for the Gateway"


async def run_serve(config: ServeConfig, out: Printer) -> int:
    return await Server(config, out).run()
