"""Embedded, SQLite-backed Kubernetes-compatible API server (see docs/apiserver.md)."""

from infergate.apiserver.embedded import EmbeddedAPIServer, ThreadedAPIServer

__all__ = ["EmbeddedAPIServer", "ThreadedAPIServer"]
