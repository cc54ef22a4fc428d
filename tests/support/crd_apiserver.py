"""An embedded API server (in a thread) with some CRDs installed, and an official Kubernetes
client of it: what the EPP's and the controller's Kubernetes tests run against."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml


@contextlib.contextmanager
def apiserver_with_crds(state_dir: Path, crds: Iterable[Path]) -> Iterator[tuple[Any, Any]]:
    """``(handle, api_client)``: the server (stopped at exit) with each CRD file of ``crds`` created."""
    from kubernetes import client, config

    from infergate.apiserver import EmbeddedAPIServer

    handle = EmbeddedAPIServer.run_in_thread(state_dir)
    try:
        api = config.new_client_from_config(config_file=str(handle.kubeconfig_path))  # type: ignore[no-untyped-call]
        extensions = client.ApiextensionsV1Api(api)
        for path in crds:
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        yield handle, api
    finally:
        handle.stop()
