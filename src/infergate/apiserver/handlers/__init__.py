"""The REST handlers of the embedded API server, one module per concern.

``server.APIServer`` routes a request to a :class:`~.common.Target` and hands it to one of
these: reads (``crud``), writes (``crud``), patches and server-side apply (``patching``),
deletion and garbage collection (``deletion``), CRD lifecycle (``crds``), the ``scale``
subresource (``scale``), watch streams (``watch``) and access reviews/TokenRequests
(``reviews``). They share the request/response helpers in ``common``.
"""
