"""Body-based routing: an ext_proc server that sets ``X-Gateway-Model-Name`` from the request body."""

from infergate.bbr.server import BBRMetrics, BBRServer, BBRServicer, model_of

__all__ = ["BBRMetrics", "BBRServer", "BBRServicer", "model_of"]
