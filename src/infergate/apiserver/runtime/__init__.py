"""The local pod runtime: Deployments of infergate's own image run as local processes.

    from infergate.apiserver.runtime import LocalRuntime, RuntimeOptions

    async with LocalRuntime(RuntimeOptions(kubeconfig=path, state_dir=dir)) as runtime:
        ...  # Deployments -> ReplicaSet + Pods (status.podIP, Ready) + local processes

    async with ServiceProxy(client, ServiceProxyOptions(load_balancer_pool="127.0.4.0/24")):
        ...  # Service cluster IPs and LoadBalancer addresses answer (kube-proxy's userspace mode)

See docs/up.md.
"""

from infergate.apiserver.runtime.addresses import DEFAULT_POD_CIDR, PodIPAllocator
from infergate.apiserver.runtime.process import RestartPolicy
from infergate.apiserver.runtime.runtime import LocalPod, LocalRuntime, RuntimeOptions
from infergate.apiserver.runtime.service_proxy import (
    DEFAULT_LOAD_BALANCER_POOL,
    ServiceProxy,
    ServiceProxyOptions,
)
from infergate.apiserver.runtime.spec import DEFAULT_IMAGE_PREFIXES
from infergate.kube import KubeClient, KubeConfig, KubeError, resource_path

__all__ = [
    "DEFAULT_IMAGE_PREFIXES",
    "DEFAULT_LOAD_BALANCER_POOL",
    "DEFAULT_POD_CIDR",
    "KubeClient",
    "KubeConfig",
    "KubeError",
    "LocalPod",
    "LocalRuntime",
    "PodIPAllocator",
    "RestartPolicy",
    "RuntimeOptions",
    "ServiceProxy",
    "ServiceProxyOptions",
    "resource_path",
]
