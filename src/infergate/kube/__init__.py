"""infergate's one Kubernetes client layer.

- :mod:`~infergate.kube.errors`: one error hierarchy (KubeError; NotFound, Conflict, Gone...);
- :mod:`~infergate.kube.kinds`: one table of kinds (group, version, plural, kind, scope);
- :mod:`~infergate.kube.config`: where the API server is (kubeconfig or in-cluster, official loaders);
- :mod:`~infergate.kube.client`: the asyncio REST client;
- :mod:`~infergate.kube.watch`: the list/watch loop (resume, 410 relist, bookmarks, back-off).
"""

from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig, from_kubeconfig, in_cluster, load_config
from infergate.kube.errors import KubeError
from infergate.kube.kinds import Kind, resource_path
from infergate.kube.watch import ListWatch

__all__ = ["Kind", "KubeClient", "KubeConfig", "KubeError", "ListWatch", "from_kubeconfig", "in_cluster",
           "load_config", "resource_path"]
