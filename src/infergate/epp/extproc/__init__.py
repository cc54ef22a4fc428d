"""Envoy ext_proc transport of the EPP: gRPC ``ExternalProcessor`` servicer, server and health."""

from infergate.epp.extproc.health import HealthService
from infergate.epp.extproc.server import ExtProcServer, HealthServer
from infergate.epp.extproc.servicer import ExtProcServicer

__all__ = ["ExtProcServer", "ExtProcServicer", "HealthServer", "HealthService"]
