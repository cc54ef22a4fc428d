"""infergate: a Python implementation of the Kubernetes inference gateway."""

__version__ = "0.1.0"
