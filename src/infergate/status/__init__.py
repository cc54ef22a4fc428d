"""``infergate status``: what a gateway is doing, as one typed snapshot.

``collect.collect_status(reader, ...)`` reads the Gateway API and inference objects (from the
Kubernetes API, or from a running ``infergate serve``), the EPPs' and the model servers'
``/metrics`` twice, a sample interval apart, and returns a ``model.StatusSnapshot``;
``snapshot.to_dict()`` is the JSON of ``infergate status -o json`` (and what a dashboard serves);
``render`` draws it with rich.
"""
