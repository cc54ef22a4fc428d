"""The gateway controller: providers feed resources to a pure translator that produces the
intermediate representation (``infergate.ir``) and resource statuses; ``infergate.dataplane``
turns the IR into Envoy config. This package never imports ``infergate.dataplane``:
``infergate.gateway`` wires the two together.

Public interface:

- ``infergate.controller.snapshot.Snapshot.of(objects)``: an immutable snapshot of manifest dicts.
- ``infergate.controller.translator.translate(snapshot, TranslatorOptions(...)) -> TranslationResult``
  (``.ir``: ``infergate.ir.DataplaneConfig``; ``.statuses``: ``{ObjectRef: status}``; ``.foreign_gateways``).
- ``infergate.controller.translator.addresses``: ``LoopbackAllocator(cidr)``, ``ClusterAllocator(address)``.
- ``infergate.controller.status.merge_status(ref, current, desired, controller_name=..., foreign_gateways=...)``.
- ``infergate.controller.providers.file.FileProvider(dir, poll_interval=, status_file=)`` and
  ``infergate.controller.providers.kubernetes.KubernetesProvider(client)`` (an ``infergate.kube`` client).
- ``infergate.controller.runner``: ``Reconciler(provider, applier, options)``, the reconcile loop
  (``infergate.gateway.run_gateway`` runs it with a ``Dataplane`` as the applier).
"""
