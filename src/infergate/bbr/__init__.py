"""Body-based routing: an ext_proc server that sets ``X-Gateway-Model-Name`` from the request body."""

from infergate.bbr.server import MODEL_HEADER, BBRMetrics, BBRServer, BBRServicer, model_of

__all__ = ["MODEL_HEADER", "BBRMetrics", "BBRServer", "BBRServicer", "model_of"]
