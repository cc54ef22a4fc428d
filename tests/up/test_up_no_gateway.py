"""`infergate up --no-gateway`: the control plane alone (API server, local runtime, service proxy).

No GatewayClass and no gateway process; the ready file says so; a LoadBalancer Service gets a
loopback address of the pool in its status. The default keeps its gateway and no proxy.
--gateway-class with --no-gateway is refused, pointing at the chart.
"""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.cli.up import command as up_command
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.up import LocalCluster, UpOptions
from infergate.util.net import random_loopback_block
from infergate.util.wait import async_wait_until

from .conftest import private_cidr


def test_gateway_class_needs_the_gateway() -> None:
    result = CliRunner().invoke(up_command, ["--no-gateway", "--gateway-class", "x", "--state-dir", "/nonexistent"])
    assert result.exit_code == 2
    assert "--gateway-class: with --no-gateway infergate up creates no GatewayClass" in result.output
    assert "charts/infergate" in result.output
    with pytest.raises(ValueError, match="--gateway-class: without the built-in gateway"):
        UpOptions(state_dir=Path("x"), gateway=False, gateway_classes=("x",))


def test_load_balancer_pool_is_checked_with_the_flag_name() -> None:
    with pytest.raises(ValueError, match=r"--load-balancer-pool 10.0.0.0/24 is not inside 127.0.0.0/8"):
        UpOptions(state_dir=Path("x"), load_balancer_pool="10.0.0.0/24")
    with pytest.raises(ValueError, match=r"--load-balancer-pool 'nope': not an IPv4 network"):
        UpOptions(state_dir=Path("x"), load_balancer_pool="nope")
    result = CliRunner().invoke(up_command, ["--no-gateway", "--load-balancer-pool", "10.1.0.0/24",
                                             "--state-dir", "/nonexistent"])
    assert result.exit_code == 2 and "--load-balancer-pool 10.1.0.0/24 is not inside 127.0.0.0/8" in result.output


def test_service_proxy_follows_the_gateway_unless_told() -> None:
    assert not UpOptions(state_dir=Path("x")).proxy_enabled
    assert UpOptions(state_dir=Path("x"), gateway=False).proxy_enabled
    assert not UpOptions(state_dir=Path("x"), gateway=False, service_proxy=False).proxy_enabled
    assert UpOptions(state_dir=Path("x"), service_proxy=True).proxy_enabled


@pytest.mark.e2e
async def test_no_gateway_runs_the_control_plane_with_the_service_proxy(tmp_path: Path) -> None:
    first = random_loopback_block(1, 9, rng=random.Random())[0]
    pool = str(ipaddress.ip_network(f"{first}/24", strict=False))
    options = UpOptions(state_dir=tmp_path / "state", port=0, gateway=False, pod_cidr=private_cidr(8000),
                        load_balancer_pool=pool)
    async with LocalCluster(options) as cluster:
        assert cluster.gateway is None and cluster.proxy is not None and cluster.gateway_class_names == []
        ready = json.loads((cluster.state_dir / "up.json").read_text())
        assert ready["gateway_admin"] is None and ready["gateway_classes"] == [] and ready["load_balancer_pool"] == pool
        async with KubeClient.from_kubeconfig(cluster.kubeconfig_path) as client:
            assert (await client.list(kinds.GATEWAY_CLASSES.path())).get("items") == []
            await client.create(kinds.SERVICES.path("default"), {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 18080}]}})

            async def ingress() -> list[dict[str, str]] | None:
                svc = await client.get(kinds.SERVICES.path("default", "lb")) or {}
                return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")

            (entry,) = await async_wait_until(ingress, 10, interval=0.1, what="the load-balancer ingress")
            assert ipaddress.ip_address(entry["ip"]) in ipaddress.ip_network(pool)


def test_address_pool_is_checked_up_front_by_the_gateways_rule() -> None:
    """Before: the gateway process refused it with exit code 2 and `infergate up` restarted it forever."""
    with pytest.raises(ValueError, match=r"^--address-pool: address pool 10.0.0.0/24: must be an IPv4 loopback"):
        UpOptions(state_dir=Path("x"), address_pool="10.0.0.0/24")
    with pytest.raises(ValueError, match=r"^--address-pool: 'nope' does not appear to be an IPv4 or IPv6 network"):
        UpOptions(state_dir=Path("x"), address_pool="nope")
    assert UpOptions(state_dir=Path("x"), address_pool="127.0.9.7/32").address_pool == "127.0.9.7/32"  # one Gateway
    assert UpOptions(state_dir=Path("x"), address_pool="nope", gateway=False).gateway is False  # not used then


def test_a_bad_address_pool_is_a_usage_error_of_infergate_up(tmp_path: Path) -> None:
    result = CliRunner().invoke(up_command, ["--state-dir", str(tmp_path), "--port", "0", "--address-pool", "10.0.0.0/24"])
    assert result.exit_code == 2 and "--address-pool: address pool 10.0.0.0/24: must be an IPv4 loopback" in result.output
    assert not (tmp_path / "state.db").exists()  # refused before anything started
