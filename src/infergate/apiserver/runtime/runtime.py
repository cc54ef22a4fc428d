"""The local runtime: Deployments of infergate's own image become local processes and Pods.

Watches Deployments and Pods through the API (any server, usually the embedded one). For a
Deployment whose pod template has a container that runs infergate (see
:func:`infergate.apiserver.runtime.spec.runs_locally`) it keeps ``spec.replicas`` pods: a
ReplicaSet ``NAME-HASH`` owned by the Deployment, Pods ``NAME-HASH-XXXXX`` owned by it, each
with its own loopback IP and one local process per container (infergate, or Envoy: see
:func:`infergate.apiserver.runtime.spec.local_containers`), each restarted with backoff when
it exits or when its liveness/startup probe fails (see :mod:`infergate.apiserver.runtime.process`).
Pod status (phase, IP, ``containerStatuses`` with Ready from each readiness probe and
``started`` from each startup probe; the pod Ready when all its containers are) and Deployment
status (replicas, ready, available, conditions) are written through the status subresource. A template change
replaces the pods (new ReplicaSet); scaling down or deleting the Deployment stops them.
Every other Deployment stays a stored object.

Service accounts: whatever the server's authorization mode, each pod gets a token of ITS OWN
ServiceAccount (``spec.serviceAccountName``, default ``default``, created in the namespace when missing),
requested through the TokenRequest subresource and renewed before it expires, in its volume and
in a per-pod kubeconfig; ``automountServiceAccountToken: false`` (on the pod, else on the
ServiceAccount) gives it no token and no usable kubeconfig.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infergate.apiserver.runtime.addresses import DEFAULT_POD_CIDR, PodIPAllocator
from infergate.apiserver.runtime.envoy_sidecar import pod_envoy_argv
from infergate.apiserver.runtime.logs import LogServer, PodLogFiles
from infergate.apiserver.runtime.pods import (
    DEPLOYMENT_ANNOTATION,
    HASH_LABEL,
    RUNTIME_ANNOTATION,
    deployment_status,
    pod_object,
    pod_status,
    random_suffix,
    replica_set,
)
from infergate.apiserver.runtime.process import ContainerState, PodProcess, RestartPolicy
from infergate.apiserver.runtime.spec import (
    DEFAULT_IMAGE_PREFIXES,
    ENVOY,
    LaunchSpec,
    PodIdentity,
    launch_spec,
    local_containers,
    local_init_containers,
    program_of,
    skipped_containers,
    template_hash,
)
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import from_kubeconfig
from infergate.kube.errors import KubeError
from infergate.kube.kinds import Kind
from infergate.kube.watch import ListWatch
from infergate.util.clock import utc_now
from infergate.util.files import private_dir, write_private

log = logging.getLogger(__name__)

# Options of infergate's own commands that name the address to listen on: set to the pod IP
# (through click's INFERGATE_<COMMAND>_<OPTION> defaults) unless the container sets them.
BIND_ENV = ("INFERGATE_EPP_HOST", "INFERGATE_BBR_HOST", "INFERGATE_SIM_ADDRESS", "INFERGATE_SIM_ADMIN_ADDRESS",
            "INFERGATE_GATEWAY_ADMIN_HOST")
_STRIPPED_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAME", "POD_IP",
                 "POD_NAMESPACE")
_ZERO_OMITTED = ("readyReplicas", "availableReplicas", "updatedReplicas", "unavailableReplicas")


@dataclass(frozen=True)
class RuntimeOptions:
    kubeconfig: Path  # the runtime reads the API with it, and pods get it as KUBECONFIG
    state_dir: Path  # logs/, volumes/, pod-ips.json
    pod_cidr: str = DEFAULT_POD_CIDR
    image_prefixes: tuple[str, ...] = DEFAULT_IMAGE_PREFIXES
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    resync_s: float = 2.0
    node_name: str = "infergate-local"
    # no longer has an effect: each pod always gets a token of its own ServiceAccount
    # (TokenRequest), never the runtime's token (kept until its callers drop it)
    service_account_tokens: bool = True
    token_expiration_s: int = 3600


@dataclass
class LocalPod:
    name: str
    namespace: str
    deployment: str
    pod_hash: str
    ip: str
    uid: str
    created: str
    containers: list[dict[str, Any]]  # the ones the runtime runs, in spec.containers order
    created_rv: int = 0
    processes: list[PodProcess] = field(default_factory=list)  # one per container, once started
    init_containers: list[dict[str, Any]] = field(default_factory=list)  # run to completion first, in order
    init_processes: list[PodProcess] = field(default_factory=list)
    init_task: asyncio.Task[None] | None = None  # runs the init containers, then starts the containers
    ready_since: str = ""
    was_ready: bool = False
    published_ready: bool = False  # the API shows this pod Ready (what controllers and clients see)
    error: str | None = None
    service_account: str = ""  # the account whose token the pod has
    token_renew_at: float = 0.0  # time.time() after which its token is requested again (0: no token)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def process(self) -> PodProcess | None:
        """The first container's process (a pod of one container: its process)."""
        return self.processes[0] if self.processes else None

    @property
    def container(self) -> dict[str, Any]:
        return self.containers[0]

    @property
    def ready(self) -> bool:
        """Every container is ready."""
        return bool(self.processes) and all(p.state.ready for p in self.processes)

    def container_names(self) -> list[str]:
        return [str(c.get("name") or "main") for c in self.containers]

    def init_container_names(self) -> list[str]:
        return [str(c.get("name") or "init") for c in self.init_containers]

    def all_processes(self) -> list[PodProcess]:
        return [*self.init_processes, *self.processes]

    def statuses(self) -> tuple[list[tuple[dict[str, Any], ContainerState]],
                                list[tuple[dict[str, Any], ContainerState]]]:
        """(container, state) pairs of the containers and of the init containers."""
        return ([(c, p.state) for c, p in zip(self.containers, self.processes, strict=True)],
                [(c, p.state) for c, p in zip(self.init_containers, self.init_processes, strict=True)])


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class LocalRuntime:
    """Run as ``async with LocalRuntime(options): ...`` or ``start()`` / ``stop()``."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.client = KubeClient(from_kubeconfig(options.kubeconfig))
        self.allocator = PodIPAllocator(options.pod_cidr, options.state_dir / "pod-ips.json")
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, LocalPod] = {}
        self._replicasets: dict[str, str] = {}  # ReplicaSet key -> its Deployment's key
        self._rs_uids: dict[str, str] = {}
        self._rs_replicas: dict[str, int] = {}
        self._rs_status: dict[str, tuple[int, int]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._dirty: set[str] = set()
        self._wake_writer = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> LocalRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        private_dir(self.options.state_dir)  # pods' volumes hold their tokens and Secrets
        await self.client.open()
        deployments = await self.client.list(kinds.DEPLOYMENTS.path())
        for item in deployments.get("items") or []:
            self.deployments[_key(item)] = self._typed(item, "apps/v1", "Deployment")
        replicasets = await self.client.list(kinds.REPLICA_SETS.path())
        for item in replicasets.get("items") or []:
            if (item["metadata"].get("annotations") or {}).get(RUNTIME_ANNOTATION):
                namespace = item["metadata"].get("namespace", "")
                owner = item["metadata"]["annotations"].get(DEPLOYMENT_ANNOTATION, "")
                self._replicasets[_key(item)] = f"{namespace}/{owner}"
                self._rs_uids[_key(item)] = str(item["metadata"].get("uid", ""))
                self._rs_replicas[_key(item)] = int((item.get("spec") or {}).get("replicas", 0))
        pods = await self.client.list(kinds.PODS.path())
        for item in pods.get("items") or []:
            await self._adopt(item)
        self._tasks = [
            asyncio.create_task(self._list_watch(kinds.DEPLOYMENTS, self._on_deployment).run(), name="watch deploy"),
            asyncio.create_task(self._list_watch(kinds.PODS, self._on_pod).run(), name="watch pods"),
            asyncio.create_task(self._worker(), name="runtime worker"),
            asyncio.create_task(self._status_writer(), name="runtime status writer"),
            asyncio.create_task(self._resync(), name="runtime resync"),
        ]
        for key in list(self.deployments):
            self._enqueue(key)

    async def stop(self) -> None:
        """Stop every pod process (the Pod objects stay, marked not ready) and the watches."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        pods = list(self.pods.values())
        # the whole runtime stops (no Service outlives it): no preStop pause
        await asyncio.gather(*(process.stop(pre_stop=False) for p in pods for process in p.all_processes()),
                             *self._stopping, return_exceptions=True)
        if pods:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(self._write_stopped(p) for p in pods),
                                                      return_exceptions=True), 5.0)
        await self.client.close()

    async def _write_terminating(self, pod: LocalPod) -> None:
        """The pod's containers not ready in the API: a pod being deleted receives no new traffic."""
        if not pod.processes:
            return
        containers, init_containers = pod.statuses()
        terminating = [(container, replace(state, ready=False)) for container, state in containers]
        status = pod_status(terminating, pod.ip, pod.created, utc_now(), init_containers)
        try:
            await self.client.merge_patch(kinds.PODS.path(pod.namespace, pod.name, "status"), {"status": status})
        except KubeError as exc:  # gone already (garbage collection): nothing routes to it
            if exc.status != 404:
                log.warning("pod %s: status: %s", pod.key, exc)
        except Exception as exc:  # the API server away: the pod is stopped all the same
            log.warning("pod %s: status: %s", pod.key, exc)
        pod.published_ready = False

    async def _write_stopped(self, pod: LocalPod) -> None:
        """Pods stay stored while the runtime is down: not Ready, waiting ``RuntimeStopped``."""
        states = [p.state for p in pod.processes] or [ContainerState() for _ in pod.containers]
        stopped = [replace(base, phase="Pending", running_since=None, waiting_reason="RuntimeStopped", ready=False,
                           pid=None) for base in states]
        status = pod_status(list(zip(pod.containers, stopped, strict=False)), pod.ip, pod.created, utc_now(),
                            pod.statuses()[1])
        await self.client.merge_patch(kinds.PODS.path(pod.namespace, pod.name, "status"),
                                      {"status": status})

    # -- queries (tests, `infergate up`) ----------------------------------------------------------

    def log_path(self, namespace: str, name: str, container: str | None = None) -> Path | None:
        """The log file of a container (default: the first) of a pod this runtime runs, else None."""
        files = self.log_files(namespace, name)
        if files is None:
            return None
        if container is None:
            return next(iter(files.containers.values()), None)
        return files.get(container)

    def log_files(self, namespace: str, name: str) -> PodLogFiles | None:
        """The log files of the containers and init containers of a pod this runtime runs, else None."""
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return None
        return PodLogFiles(containers={c: self._log_file(pod, c) for c in pod.container_names()},
                           init_containers={c: self._log_file(pod, c) for c in pod.init_container_names()})

    def _log_file(self, pod: LocalPod, container: str) -> Path:
        return self.options.state_dir / "logs" / f"{pod.namespace}_{pod.name}_{container}.log"

    def log_server(self) -> LogServer:
        """The ``pods/log`` handler (``kubectl logs``) for ``APIServer.add_subresource_handler``."""
        return LogServer(self.log_files)

    def pods_of(self, namespace: str, deployment: str) -> list[LocalPod]:
        return sorted((p for p in self.pods.values() if p.namespace == namespace and p.deployment == deployment),
                      key=lambda p: p.name)

    # -- watches ------------------------------------------------------------------------------------

    @staticmethod
    def _typed(obj: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        return obj

    def _list_watch(self, kind: Kind, handler: Any) -> ListWatch:
        """List + watch of ``kind`` in every namespace; ``handler(type, obj, list_rv)`` (type SYNC for a list)."""
        def on_list(items: list[dict[str, Any]]) -> None:
            handler("SYNC", {"items": items}, _rv({"metadata": {"resourceVersion": watch.resource_version}}))

        def on_event(event_type: str, obj: dict[str, Any]) -> None:
            handler(event_type, obj, 0)

        watch = ListWatch(self.client, kind.path(), on_list=on_list, on_event=on_event, name=kind.qualified,
                          retry_delay=1.0)
        return watch

    def _on_deployment(self, kind: str, obj: dict[str, Any], list_rv: int) -> None:
        if kind == "SYNC":
            fresh = {_key(i): self._typed(i, "apps/v1", "Deployment") for i in obj["items"]}
            for key in set(self.deployments) | set(fresh):
                self._enqueue(key)
            self.deployments = fresh
            return
        key = _key(obj)
        if kind == "DELETED":
            self.deployments.pop(key, None)
        else:
            self.deployments[key] = self._typed(obj, "apps/v1", "Deployment")
        self._enqueue(key)

    def _on_pod(self, kind: str, obj: dict[str, Any], list_rv: int) -> None:
        if kind == "SYNC":
            present = {_key(i): i["metadata"].get("uid") for i in obj["items"]}
            for key, pod in list(self.pods.items()):
                if present.get(key) != pod.uid and pod.created_rv <= list_rv:
                    self._forget_pod(pod)
            return
        if kind == "DELETED":
            gone = self.pods.get(_key(obj))
            if gone is not None and gone.uid == obj["metadata"].get("uid"):
                self._forget_pod(gone)

    def _forget_pod(self, pod: LocalPod) -> None:
        """The Pod object is gone (kubectl delete pod, garbage collection): stop its process."""
        self.pods.pop(pod.key, None)
        task = asyncio.create_task(self._stop_forgotten(pod))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self._enqueue(f"{pod.namespace}/{pod.deployment}")

    async def _stop_forgotten(self, pod: LocalPod) -> None:
        """Its processes stopped (preStop pause, SIGTERM), then its address free for another pod."""
        await asyncio.gather(*(process.stop() for process in pod.all_processes()), return_exceptions=True)
        self.allocator.release(pod.key)

    # -- reconcile ---------------------------------------------------------------------------------

    def _enqueue(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                await self.reconcile(key)
            except Exception as exc:
                log.error("deployment %s: %s", key, exc)
                loop = asyncio.get_running_loop()
                loop.call_later(1.0, self._enqueue, key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_s)
            for key in list(self.deployments):
                self._enqueue(key)
            await self._renew_tokens()

    async def _renew_tokens(self) -> None:
        """Service-account tokens are renewed at 80% of their lifetime, as the kubelet does."""
        now = time.time()
        for pod in list(self.pods.values()):
            if pod.token_renew_at and now >= pod.token_renew_at and pod.processes:
                try:
                    await self._write_service_account_token(pod, pod.service_account)
                except Exception as exc:  # the API server away for a moment: the next resync retries
                    log.warning("pod %s: renewing the service-account token: %s", pod.key, exc)

    async def reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        deployment = self.deployments.get(key)
        mine = self.pods_of(namespace, name)
        containers: list[dict[str, Any]] = []
        if deployment is not None and not deployment["metadata"].get("deletionTimestamp"):
            template = deployment["spec"].get("template") or {}
            containers = local_containers(template, self.options.image_prefixes)
        if deployment is None or not containers:
            await asyncio.gather(*(self._delete_pod(p) for p in mine))
            for rs_key in [k for k, owner in self._replicasets.items() if owner == key]:
                self._replicasets.pop(rs_key, None)
                if deployment is None:
                    await self.client.delete(kinds.REPLICA_SETS.path(namespace,
                                                           rs_key.split("/", 1)[1]))
            return
        template = deployment["spec"].get("template") or {}
        pod_hash = template_hash(template)
        rs_name = f"{name}-{pod_hash}"
        desired = int(deployment["spec"].get("replicas", 1))
        rs = await self._ensure_replicaset(deployment, rs_name, pod_hash, desired)
        current = [p for p in mine if p.pod_hash == pod_hash]
        old = [p for p in mine if p.pod_hash != pod_hash]
        for _ in range(desired - len(current)):
            current.append(await self._create_pod(deployment, rs, rs_name, pod_hash, containers))
        if len(current) > desired:
            newest_first = sorted(current, key=lambda p: p.created, reverse=True)
            extra = sorted(newest_first, key=lambda p: p.ready)[: len(current) - desired]  # not-ready, newest first
            await asyncio.gather(*(self._delete_pod(p) for p in extra))
        # A new template: the old pods go once the new ones are Ready in the API (a surge
        # rollout: EPPs and gateways see the new endpoints first), or at once when none of the
        # old ones is Ready anyway.
        if old and (sum(p.ready and p.published_ready for p in current) >= desired
                    or not any(p.ready for p in old)):
            await asyncio.gather(*(self._delete_pod(p) for p in old))
        if not old:
            for rs_key in [k for k, owner in self._replicasets.items() if owner == key
                           and k != f"{namespace}/{rs_name}"]:
                self._replicasets.pop(rs_key, None)
                await self.client.delete(kinds.REPLICA_SETS.path(namespace, rs_key.split("/", 1)[1]))
        for pod in self.pods_of(namespace, name):
            if not pod.processes:
                await self._start_process(pod, template)
        await self._write_deployment_status(key)

    async def _ensure_replicaset(self, deployment: dict[str, Any], rs_name: str, pod_hash: str,
                                 desired: int) -> dict[str, Any]:
        namespace = deployment["metadata"]["namespace"]
        rs = replica_set(deployment, rs_name, pod_hash, desired)
        path = kinds.REPLICA_SETS.path(namespace, rs_name)
        rs_key = f"{namespace}/{rs_name}"
        if rs_key not in self._replicasets:
            existing = await self.client.get(path)
            if existing is None:
                existing = await self.client.create(kinds.REPLICA_SETS.path(namespace), rs)
            self._replicasets[rs_key] = _key(deployment)
            self._rs_uids[rs_key] = existing["metadata"].get("uid", "")
            if int((existing.get("spec") or {}).get("replicas", -1)) != desired:
                await self.client.merge_patch(path, {"spec": {"replicas": desired}})
        elif self._rs_replicas.get(rs_key) != desired:
            await self.client.merge_patch(path, {"spec": {"replicas": desired}})
        self._rs_replicas[rs_key] = desired
        rs["metadata"]["uid"] = self._rs_uids.get(rs_key, "")
        return rs

    async def _create_pod(self, deployment: dict[str, Any], rs: dict[str, Any], rs_name: str, pod_hash: str,
                          containers: list[dict[str, Any]]) -> LocalPod:
        namespace = deployment["metadata"]["namespace"]
        for _ in range(5):
            name = f"{rs_name}-{random_suffix()}"
            if f"{namespace}/{name}" not in self.pods:
                break
        body = pod_object(deployment, rs, name, pod_hash, self.options.node_name)
        created = await self.client.create(kinds.PODS.path(namespace), body)
        meta = created["metadata"]
        ip = self.allocator.allocate(f"{namespace}/{name}")
        pod = LocalPod(name=name, namespace=namespace, deployment=deployment["metadata"]["name"], pod_hash=pod_hash,
                       ip=ip, uid=str(meta.get("uid", "")), created=str(meta.get("creationTimestamp") or utc_now()),
                       containers=containers, created_rv=_rv(created))
        pod.ready_since = pod.created
        self.pods[pod.key] = pod
        log.info("pod %s: created (%s)", pod.key, ip)
        return pod

    async def _adopt(self, item: dict[str, Any]) -> None:
        """A Pod this runtime made before a restart: run it again on its address, or delete it."""
        meta = item["metadata"]
        annotations = meta.get("annotations") or {}
        if not annotations.get(RUNTIME_ANNOTATION):
            return
        namespace, name = meta.get("namespace", "default"), meta["name"]
        deployment = self.deployments.get(f"{namespace}/{annotations.get(DEPLOYMENT_ANNOTATION, '')}")
        containers: list[dict[str, Any]] = []
        if deployment is not None:
            containers = local_containers(deployment["spec"].get("template") or {}, self.options.image_prefixes)
        if deployment is None or not containers:
            await self.client.delete(kinds.PODS.path(namespace, name))
            self.allocator.release(f"{namespace}/{name}")
            return
        ip = self.allocator.allocate(f"{namespace}/{name}", preferred=(item.get("status") or {}).get("podIP"))
        pod = LocalPod(name=name, namespace=namespace, deployment=deployment["metadata"]["name"],
                       pod_hash=str((meta.get("labels") or {}).get(HASH_LABEL, "")), ip=ip, uid=str(meta.get("uid")),
                       created=str(meta.get("creationTimestamp") or utc_now()), containers=containers,
                       created_rv=_rv(item))
        pod.ready_since = pod.created
        self.pods[pod.key] = pod

    async def _delete_pod(self, pod: LocalPod) -> None:
        """The kubelet's order: the pod leaves its Services (not Ready in the API, so endpoints
        and the service proxy stop sending it new connections), each container's preStop pause,
        SIGTERM (the program drains), and the Pod object goes once the processes have exited."""
        self.pods.pop(pod.key, None)
        await self._write_terminating(pod)
        await asyncio.gather(*(process.stop() for process in pod.all_processes()))
        await self.client.delete(kinds.PODS.path(pod.namespace, pod.name))
        self.allocator.release(pod.key)
        log.info("pod %s: deleted", pod.key)

    # -- processes ---------------------------------------------------------------------------------

    async def _lookup(self, namespace: str, template: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
        """The ConfigMap and Secret keys the template's env and volumes refer to."""
        wanted: set[tuple[str, str]] = set()
        for container in (template.get("spec") or {}).get("containers") or []:
            for item in container.get("env") or []:
                source = item.get("valueFrom") or {}
                if "configMapKeyRef" in source:
                    wanted.add(("ConfigMap", str(source["configMapKeyRef"].get("name"))))
                if "secretKeyRef" in source:
                    wanted.add(("Secret", str(source["secretKeyRef"].get("name"))))
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if "configMap" in volume:
                wanted.add(("ConfigMap", str(volume["configMap"].get("name"))))
            if "secret" in volume:
                wanted.add(("Secret", str(volume["secret"].get("secretName"))))
        values: dict[tuple[str, str, str], str] = {}
        for kind, name in wanted:
            source = kinds.CONFIGMAPS if kind == "ConfigMap" else kinds.SECRETS
            obj = await self.client.get(source.path(namespace, name))
            if obj is None:
                continue
            for key, value in (obj.get("data") or {}).items():
                values[(kind, name, key)] = base64.b64decode(value).decode() if kind == "Secret" else str(value)
            for key, value in (obj.get("binaryData") or {}).items():
                values[(kind, name, key)] = base64.b64decode(value).decode(errors="replace")
        return values

    def _materialize_volumes(self, pod: LocalPod, template: Mapping[str, Any],
                             values: Mapping[tuple[str, str, str], str], container: Mapping[str, Any]) -> dict[str, str]:
        """Write the container's configMap/secret/emptyDir volumes to disk: mount path -> local path.
        A volume is one directory of the pod, whichever of its containers mount it."""
        volumes = {v.get("name"): v for v in (template.get("spec") or {}).get("volumes") or []}
        base = self.options.state_dir / "volumes" / pod.namespace / pod.name
        mapping: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name"))
            if volume is None:
                continue
            target = private_dir(base / str(mount["name"]))
            source = volume.get("configMap") or volume.get("secret")
            if source is not None:
                kind = "ConfigMap" if "configMap" in volume else "Secret"
                ref = str(source.get("name") or source.get("secretName"))
                items = source.get("items")
                keys = {i["key"]: i["path"] for i in items} if items else {
                    k: k for (kd, n, k) in values if kd == kind and n == ref}
                for key, rel in keys.items():
                    if (kind, ref, key) in values:
                        path = target / rel
                        private_dir(path.parent)
                        write_private(path, values[(kind, ref, key)])
            elif "emptyDir" not in volume:
                continue  # projected tokens, hostPath...: nothing to provide locally
            local = target / mount["subPath"] if mount.get("subPath") else target
            mapping[str(mount["mountPath"])] = str(local)
        return mapping

    def _service_account_dir(self, pod: LocalPod) -> Path:
        return self.options.state_dir / "volumes" / pod.namespace / pod.name / "serviceaccount"

    async def _own_service_account(self, pod: LocalPod, template: Mapping[str, Any]) -> dict[str, str]:
        """The volume holds a token of the pod's own ServiceAccount,
        KUBECONFIG is a kubeconfig with that token (or, without a token, a path that does not exist:
        the pod reaches the API as nothing, never as the runtime)."""
        spec = template.get("spec") or {}
        name = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        account = await self.client.get(kinds.SERVICE_ACCOUNTS.path(pod.namespace, name))
        if account is None and name == "default":  # the ServiceAccount controller's job on a real cluster
            with contextlib.suppress(KubeError):  # 409: created meanwhile
                await self.client.create(kinds.SERVICE_ACCOUNTS.path(pod.namespace), {
                    "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
            account = await self.client.get(kinds.SERVICE_ACCOUNTS.path(pod.namespace, name))
        if account is None:
            raise ValueError(f'error looking up service account {pod.namespace}/{name}: serviceaccount "{name}" '
                             "not found")
        directory = self._service_account_dir(pod)
        kubeconfig = directory.parent / "kubeconfig"
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.get("automountServiceAccountToken")
        pod.service_account = name
        if automount is False:
            pod.token_renew_at = 0.0
            return {"KUBECONFIG": str(kubeconfig)}  # not written: no credentials at all
        config = self.client.config
        url = urlsplit(config.server)
        private_dir(directory)
        write_private(directory / "ca.crt", config.ca_pem or b"")
        write_private(directory / "namespace", pod.namespace)
        await self._write_service_account_token(pod, name)
        return {"KUBERNETES_SERVICE_HOST": url.hostname or "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(url.port or 443),
                "INFERGATE_SERVICEACCOUNT_DIR": str(directory), "KUBECONFIG": str(kubeconfig)}

    async def _write_service_account_token(self, pod: LocalPod, name: str) -> None:
        """Request a token of ServiceAccount ``name`` (TokenRequest) into the pod's volume and kubeconfig."""
        seconds = self.options.token_expiration_s
        answer = await self.client.request(
            "POST", kinds.SERVICE_ACCOUNTS.path(pod.namespace, name, "token"),
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": seconds}})
        token = str(((answer or {}).get("status") or {}).get("token") or "")
        if not token:
            raise ValueError(f"no token for service account {pod.namespace}/{name}")
        directory = self._service_account_dir(pod)
        write_private(directory / "token", token)
        config = self.client.config
        from infergate.apiserver.embedded import kubeconfig_text

        write_private(directory.parent / "kubeconfig", kubeconfig_text(config.server, token, config.ca_pem or b"",
                                                                          name=f"{pod.namespace}-{name}"))
        pod.token_renew_at = time.time() + 0.8 * seconds

    def _base_env(self, pod: LocalPod, account_env: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV and not k.startswith("INFERGATE_")}
        env.update(account_env)
        env.update({"POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace,
                    "POD_IP": pod.ip, "HOSTNAME": pod.name, "PYTHONUNBUFFERED": "1",
                    "INFERGATE_PARENT_PID": str(os.getpid())})
        env.update({name: pod.ip for name in BIND_ENV})
        return env

    async def _start_process(self, pod: LocalPod, template: Mapping[str, Any]) -> None:
        """Start one process per container of the pod (all of them, or none: an error is reported
        on the pod as ``CreateContainerConfigError`` of the container it concerns)."""
        failing = pod.container_names()[0]
        try:
            values = await self._lookup(pod.namespace, template)
            tmeta = template.get("metadata") or {}
            identity = PodIdentity(name=pod.name, namespace=pod.namespace, ip=pod.ip, uid=pod.uid,
                                   node_name=self.options.node_name,
                                   service_account=str((template.get("spec") or {}).get("serviceAccountName",
                                                                                        "default")),
                                   labels=tmeta.get("labels") or {}, annotations=tmeta.get("annotations") or {})
            pod.init_containers = local_init_containers(template, self.options.image_prefixes)
            init_specs: list[LaunchSpec] = []
            for container, name in zip(pod.init_containers, pod.init_container_names(), strict=True):
                failing = name
                init_specs.append(self._container_spec(pod, template, container, identity, values))
            specs: list[LaunchSpec] = []
            for container, name in zip(pod.containers, pod.container_names(), strict=True):
                failing = name
                specs.append(self._container_spec(pod, template, container, identity, values))
            failing = pod.container_names()[0]
            account_env = await self._own_service_account(pod, template)
        except (ValueError, KeyError, KubeError) as exc:
            if pod.error != str(exc):
                log.error("pod %s: cannot start: %s", pod.key, exc)
                pod.error = str(exc)
                await self._patch_pod_error(pod, failing, str(exc))
            return
        pod.error = None
        skipped = skipped_containers(template, self.options.image_prefixes)
        if skipped:
            log.warning("pod %s: not running containers %s (neither infergate nor Envoy)", pod.key, skipped)
        base_env = self._base_env(pod, account_env)
        pod.init_processes = [PodProcess(pod.key, pod.ip, spec, base_env, self._log_file(pod, spec.container),
                                         self._on_process_change, self.options.restart, run_to_completion=True)
                              for spec in init_specs]
        pod.processes = [PodProcess(pod.key, pod.ip, spec, base_env, self._log_file(pod, spec.container),
                                    self._on_process_change, self.options.restart) for spec in specs]
        if not pod.init_processes:
            for process in pod.processes:
                process.start()
            return
        for process in pod.processes:
            process.state.waiting_reason = "PodInitializing"
        pod.init_task = asyncio.create_task(self._initialize(pod), name=f"init {pod.key}")

    async def _initialize(self, pod: LocalPod) -> None:
        """Each init container in order, each until it exits 0; then the containers (nothing once stopped)."""
        self._dirty.add(pod.key)
        self._wake_writer.set()
        for process in pod.init_processes:
            process.start()
            if not await process.completed():
                return
        for process in pod.processes:
            process.start()

    def _container_spec(self, pod: LocalPod, template: Mapping[str, Any], container: dict[str, Any],
                        identity: PodIdentity, values: Mapping[tuple[str, str, str], str]) -> LaunchSpec:
        """What one container runs: its volumes written, its arguments resolved (Envoy's bootstrap
        bound to the pod's address)."""
        path_map = self._materialize_volumes(pod, template, values, container)
        program = program_of(container, self.options.image_prefixes) or ""
        spec = launch_spec(template, container, identity, values, path_map, program=program)
        if program == ENVOY:
            work = private_dir(self.options.state_dir / "volumes" / pod.namespace / pod.name)
            spec = replace(spec, argv=tuple(pod_envoy_argv(list(spec.argv), pod.ip, work, spec.container)))
        return spec

    async def _patch_pod_error(self, pod: LocalPod, failing: str, message: str) -> None:
        def statuses(containers: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
            out = []
            for container, name in zip(containers, names, strict=True):
                waiting: dict[str, Any] = {"reason": "CreateContainerConfigError", "message": message} \
                    if name == failing else {"reason": "ContainerCreating"}
                out.append({"name": name, "ready": False, "restartCount": 0, "image": container.get("image", ""),
                            "imageID": "", "state": {"waiting": waiting}})
            return out

        status: dict[str, Any] = {"phase": "Pending", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
                                  "containerStatuses": statuses(pod.containers, pod.container_names())}
        if pod.init_containers:
            status["initContainerStatuses"] = statuses(pod.init_containers, pod.init_container_names())
        with contextlib.suppress(KubeError):
            await self.client.merge_patch(kinds.PODS.path(pod.namespace, pod.name, "status"),
                                          {"status": status})

    def _on_process_change(self, process: PodProcess) -> None:
        pod = self.pods.get(process.name)
        if pod is None:
            return
        ready = pod.ready
        if ready != pod.was_ready:
            pod.ready_since = utc_now()
            pod.was_ready = ready
        self._dirty.add(pod.key)
        self._wake_writer.set()
        if ready:
            self._enqueue(f"{pod.namespace}/{pod.deployment}")

    async def _status_writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            await asyncio.sleep(0.05)
            self._wake_writer.clear()
            dirty, self._dirty = self._dirty, set()
            deployments: set[str] = set()
            for key in dirty:
                pod = self.pods.get(key)
                if pod is None or not pod.processes:
                    continue
                containers, init_containers = pod.statuses()
                status = pod_status(containers, pod.ip, pod.created, pod.ready_since, init_containers)
                published = pod.ready  # what this status write says
                try:
                    await self.client.merge_patch(kinds.PODS.path(pod.namespace, pod.name, "status"),
                                                  {"status": status})
                    if published and not pod.published_ready:
                        self._enqueue(f"{pod.namespace}/{pod.deployment}")  # a rollout may wait on it
                    pod.published_ready = published
                except KubeError as exc:
                    if exc.status != 404:
                        log.warning("pod %s: status: %s", key, exc)
                        self._dirty.add(key)
                except Exception as exc:
                    log.warning("pod %s: status: %s", key, exc)
                    self._dirty.add(key)
                deployments.add(f"{pod.namespace}/{pod.deployment}")
            for key in deployments:
                try:
                    await self._write_deployment_status(key)
                except Exception as exc:
                    log.warning("deployment %s: status: %s", key, exc)
            if self._dirty:
                await asyncio.sleep(0.5)
                self._wake_writer.set()

    async def _write_deployment_status(self, key: str) -> None:
        deployment = self.deployments.get(key)
        if deployment is None:
            return
        namespace, name = key.split("/", 1)
        template = deployment["spec"].get("template") or {}
        previous = deployment.get("status") or {}
        pods = [(p.pod_hash, p.ready) for p in self.pods_of(namespace, name)]
        current_hash = template_hash(template)
        status = deployment_status(deployment, pods, current_hash, previous, utc_now())
        await self._write_replicaset_status(namespace, f"{name}-{current_hash}",
                                            [ready for h, ready in pods if h == current_hash])
        if _same_status(status, previous):
            return
        patch: dict[str, Any] = dict(status)
        for omitted in _ZERO_OMITTED:
            patch.setdefault(omitted, None)
        try:
            updated = await self.client.merge_patch(
                kinds.DEPLOYMENTS.path(namespace, name, "status"), {"status": patch})
        except KubeError as exc:
            if exc.status == 404:
                return
            raise
        if key in self.deployments:
            self.deployments[key]["status"] = updated.get("status") or status


    async def _write_replicaset_status(self, namespace: str, rs_name: str, ready: list[bool]) -> None:
        key = f"{namespace}/{rs_name}"
        if key not in self._replicasets:
            return
        counts = (len(ready), sum(ready))
        if self._rs_status.get(key) == counts:
            return
        status = {"replicas": counts[0], "fullyLabeledReplicas": counts[0], "readyReplicas": counts[1],
                  "availableReplicas": counts[1], "observedGeneration": 1}
        with contextlib.suppress(KubeError):
            await self.client.merge_patch(kinds.REPLICA_SETS.path(namespace, rs_name, "status"),
                                          {"status": status})
            self._rs_status[key] = counts




def _same_status(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in status.items() if k != "conditions" and v not in (None, 0)}
        out["conditions"] = sorted((c.get("type"), c.get("status"), c.get("reason"))
                                   for c in status.get("conditions") or [])
        return out

    return strip(new) == strip(old)
