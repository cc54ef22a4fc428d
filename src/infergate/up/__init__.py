"""`infergate up`: the embedded control plane, the gateway and the local runtime on one machine.

    from infergate.up import LocalCluster, UpOptions

    async with LocalCluster(UpOptions(state_dir=path, port=0)) as cluster:
        cluster.kubeconfig_path   # what kubectl / helm / infergate epp use

See docs/up.md.
"""

from infergate.up.cluster import (
    CONTROLLER_NAME,
    DEFAULT_GATEWAY_CLASS,
    AlreadyRunning,
    LocalCluster,
    UpOptions,
    crd_documents,
)

__all__ = ["CONTROLLER_NAME", "DEFAULT_GATEWAY_CLASS", "AlreadyRunning", "LocalCluster", "UpOptions", "crd_documents"]
