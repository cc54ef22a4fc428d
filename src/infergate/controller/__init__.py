"""The gateway controller: providers feed resources to a pure translator that produces the
intermediate model (``ir``) and resource statuses; the data plane turns the IR into Envoy config.

Public interface:

- ``infergate.controller.snapshot.Snapshot.of(objects)``: an immutable snapshot of manifest dicts.
- ``infergate.controller.translator.translate(snapshot, TranslatorOptions(...)) -> TranslationResult``
  (``.ir``: ``ir.DataplaneConfig``; ``.statuses``: ``{ObjectRef: status}``; ``.foreign_gateways``).
- ``infergate.controller.translator.addresses``: ``LoopbackAllocator(cidr)``, ``ClusterAllocator(address)``.
- ``infergate.controller.status.merge_status(ref, current, desired, controller_name=..., foreign_gateways=...)``.
- ``infergate.controller.providers.file.FileProvider(dir, poll_interval=, status_file=)`` and
  ``infergate.controller.providers.kubernetes.KubernetesProvider(client)`` (an ``infergate.kube`` client).
- ``infergate.controller.runner``: ``Reconciler(provider, dataplane, options)``,
  ``GatewayConfig`` and ``run_gateway(config)`` (what ``infergate gateway`` runs).
- ``infergate.controller.testing``: ``pods_for_deployments``, ``conformance_objects`` for tests/demos.
"""
