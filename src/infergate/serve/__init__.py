"""``infergate serve``: the gateway on this machine, in front of model servers, without Kubernetes.

``spec`` (what to serve: --endpoint URLs, --pool files), ``health`` (the per-endpoint check at
start), ``children`` (simulators and EPPs through ``infergate.util.procs``), ``manifests``
(the Gateway API objects given to the controller's FileProvider), ``members`` (each endpoint's
own port as a pool member), ``state`` (the file ``infergate status --serve`` reads) and
``runner`` (the run: start, watch pool files, stop everything on SIGINT/SIGTERM).
"""
