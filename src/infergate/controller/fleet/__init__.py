"""Per-Gateway Envoy fleets (``infergate gateway --data-plane deployments``).

The translator is unchanged (provider -> translator -> IR + statuses); the fleet is a separate
reconciler that runs where statuses are written:

- :mod:`~infergate.controller.fleet.params`: the GatewayClass ``parametersRef`` ConfigMap's knobs;
- :mod:`~infergate.controller.fleet.desired`: a Gateway's Deployment, Service and
  PodDisruptionBudget (pure functions);
- :mod:`~infergate.controller.fleet.status`: addresses from the Envoy Service, ``Programmed``
  from the Envoys' ACKs, ``InvalidParameters`` (pure functions);
- :mod:`~infergate.controller.fleet.applier`: create / patch / prune through ``infergate.kube``;
- :mod:`~infergate.controller.fleet.provider`: ``FleetProvider``, the provider wrapper that ties them.
"""
