"""``infergate envoy``: the fleet Envoy's bootstrap (a pure function) and its command line."""

from __future__ import annotations

from click.testing import CliRunner
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2  # noqa: F401 (for the Any)
from envoy.extensions.resource_monitors.downstream_connections.v3 import downstream_connections_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format

from infergate.cli.envoy import command
from infergate.dataplane.envoy import XDS_CLUSTER
from infergate.dataplane.envoy_pod import PodEnvoyOptions, envoy_argv, pod_bootstrap


def test_the_bootstrap_names_the_gateway_and_the_pod_ip_and_reconnects_with_back_off() -> None:
    options = PodEnvoyOptions(xds_host="10.96.0.12", xds_port=18000, node_id="prod/gw", pod_ip="10.1.2.3")
    boot = pod_bootstrap(options)
    assert boot["node"] == {"id": "prod/gw", "cluster": "infergate",
                            "metadata": {"gateway": "prod/gw", "pod_ip": "10.1.2.3"}}
    assert boot["admin"]["address"]["socket_address"] == {"address": "10.1.2.3", "port_value": 19001}
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["set_node_on_first_message_only"] is True
    assert ads["grpc_services"][0]["envoy_grpc"] == {
        "cluster_name": XDS_CLUSTER,
        "retry_policy": {"retry_back_off": {"base_interval": "0.25s", "max_interval": "5s"}}}
    (xds,) = boot["static_resources"]["clusters"]
    assert xds["type"] == "STATIC"
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert endpoint == {"address": "10.96.0.12", "port_value": 18000}
    json_format.ParseDict(boot, bootstrap_pb2.Bootstrap())  # Envoy's schema has every field


def test_a_dns_name_for_the_xds_server_and_no_pod_ip() -> None:
    boot = pod_bootstrap(PodEnvoyOptions(xds_host="infergate-xds.infergate-system", xds_port=18000,
                                         node_id="prod/gw"))
    assert boot["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert boot["node"]["metadata"] == {"gateway": "prod/gw"}  # listeners keep 0.0.0.0
    assert boot["admin"]["address"]["socket_address"]["address"] == "0.0.0.0"


def test_envoy_drains_for_the_given_time() -> None:
    argv = envoy_argv(PodEnvoyOptions(xds_host="h", xds_port=1, node_id="a/b", drain_seconds=20, envoy_bin="envoy"),
                      bootstrap_path=__import__("pathlib").Path("/tmp/b.json"))
    assert argv[argv.index("--drain-time-s") + 1] == "20"
    assert "--use-dynamic-base-id" in argv  # several Envoy pods on one machine


def test_the_command_line_refuses_bad_addresses_and_node_ids() -> None:
    runner = CliRunner()
    bad_server = runner.invoke(command, ["--xds-server", "nohost", "--node-id", "a/b"])
    assert bad_server.exit_code == 2 and "expected HOST:PORT" in bad_server.output
    bad_node = runner.invoke(command, ["--xds-server", "127.0.0.1:18000", "--node-id", "gateway"])
    assert bad_node.exit_code == 2 and "expected NAMESPACE/GATEWAY" in bad_node.output
