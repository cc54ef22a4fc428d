"""The ``preStop`` pause the local runtime runs before a container's SIGTERM."""

from __future__ import annotations

from typing import Any

import pytest

from infergate.apiserver.runtime.spec import PodIdentity, launch_spec, pre_stop_pause


def container(pre_stop: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "envoy", "image": "ghcr.io/infergate/infergate:1", "command": ["infergate", "envoy"]}
    if pre_stop is not None:
        out["lifecycle"] = {"preStop": pre_stop}
    return out


@pytest.mark.parametrize(("hook", "seconds"), [
    (None, 0.0),
    ({"exec": {"command": ["sleep", "3"]}}, 3.0),  # what the controller's Envoy Deployments ask for
    ({"exec": {"command": ["/bin/sleep", "1.5"]}}, 1.5),
    ({"exec": {"command": ["sh", "-c", "sleep 5"]}}, 5.0),
    ({"sleep": {"seconds": 4}}, 4.0),  # Kubernetes' sleep action
    ({"exec": {"command": ["sh", "-c", "nginx -s quit; sleep 5"]}}, 0.0),  # not run locally
    ({"exec": {"command": ["sleep", "soon"]}}, 0.0),
    ({"httpGet": {"path": "/shutdown", "port": 8080}}, 0.0),
])
def test_the_pre_stop_pause_of_a_container(hook: dict[str, Any] | None, seconds: float) -> None:
    assert pre_stop_pause(container(hook)) == seconds


def test_a_bad_sleep_action_names_the_field_and_the_launch_spec_carries_the_pause() -> None:
    with pytest.raises(ValueError, match=r"containers\[envoy\]\.lifecycle\.preStop\.sleep\.seconds"):
        pre_stop_pause(container({"sleep": {"seconds": -1}}))
    envoy = container({"exec": {"command": ["sleep", "3"]}})
    template = {"spec": {"terminationGracePeriodSeconds": 28, "containers": [envoy]}}
    spec = launch_spec(template, envoy, PodIdentity("p", "default", "127.0.0.9"), {})
    assert (spec.pre_stop_s, spec.grace_period_s) == (3.0, 28.0)
