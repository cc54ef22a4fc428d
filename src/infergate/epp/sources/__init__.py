"""Where the EPP learns its pool: a Kubernetes API (list+watch) or a static YAML file."""

from infergate.epp.sources.base import PoolSource, SourceError

__all__ = ["PoolSource", "SourceError"]
