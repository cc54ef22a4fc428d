"""JSON-form Envoy resources <-> protobuf messages (from the ``xds-protos`` package).

Importing this module registers every message type the translator emits in the default
descriptor pool, so ``google.protobuf.json_format`` can resolve ``@type`` in ``Any`` fields.
Parsing is also the translator's schema check: a misspelt field fails here, not in Envoy.
"""

from __future__ import annotations

from typing import Any

# Registered for their side effect: every type the translator can put in an Any.
import envoy.config.cluster.v3.cluster_pb2
import envoy.config.endpoint.v3.endpoint_pb2
import envoy.config.listener.v3.listener_pb2
import envoy.config.route.v3.route_pb2
import envoy.extensions.access_loggers.file.v3.file_pb2
import envoy.extensions.access_loggers.filters.cel.v3.cel_pb2
import envoy.extensions.access_loggers.stream.v3.stream_pb2
import envoy.extensions.bootstrap.internal_listener.v3.internal_listener_pb2
import envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2
import envoy.extensions.filters.http.header_mutation.v3.header_mutation_pb2
import envoy.extensions.filters.http.header_to_metadata.v3.header_to_metadata_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.http.transform.v3.transform_pb2
import envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.load_balancing_policies.override_host.v3.override_host_pb2
import envoy.extensions.load_balancing_policies.round_robin.v3.round_robin_pb2
import envoy.extensions.transport_sockets.tls.v3.secret_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from google.protobuf import any_pb2, descriptor_pool, json_format, message, message_factory

TYPE_PREFIX = "type.googleapis.com/"


def message_class(type_url: str) -> type[message.Message]:
    name = type_url.removeprefix(TYPE_PREFIX)
    descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    cls: type[message.Message] = message_factory.GetMessageClass(descriptor)
    return cls


def to_proto(type_url: str, resource: dict[str, Any]) -> message.Message:
    """Parse one resource; raises ``json_format.ParseError`` naming the bad field."""
    msg = message_class(type_url)()
    json_format.ParseDict(resource, msg)
    return msg


def to_any(type_url: str, resource: dict[str, Any]) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(to_proto(type_url, resource))
    return packed


def to_dict(msg: message.Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return result
