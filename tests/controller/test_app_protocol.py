"""GIE v1.6.0 conformance InferencePoolAppProtocol through the translator and the xDS clusters:
``appProtocol: kubernetes.io/h2c`` pools are reached over HTTP/2 (cleartext), ``http`` and
omitted ones over HTTP/1.1 (no upstream protocol options)."""

from __future__ import annotations

from pathlib import Path

from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.dataplane import protos
from infergate.dataplane.xds_translator import translate as translate_xds
from infergate.ir.codec import ir_from_dict, ir_to_dict

from .test_missing_epp_ref import objects

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def test_app_protocol_reaches_the_pool_clusters(reference_dir: Path) -> None:
    result = translate(Snapshot.of(objects(reference_dir, "inferencepool_appprotocol.yaml")),
                       TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24")))
    protocols = {p.name: p.app_protocol for p in result.ir.pools}
    assert protocols["appprotocol-h2c-inference-pool"] == "kubernetes.io/h2c"
    assert protocols["appprotocol-http-inference-pool"] == "http"
    assert protocols["primary-inference-pool"] == "http"  # omitted: HTTP/1.1
    assert ir_from_dict(ir_to_dict(result.ir)) == result.ir  # the codec keeps it

    clusters = translate_xds(result.ir).by_type_url()[CLUSTER]
    key = {p.name: p.key for p in result.ir.pools}
    h2c = clusters[key["appprotocol-h2c-inference-pool"]]
    options = h2c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    protos.to_proto(CLUSTER, h2c)  # a valid Envoy Cluster
    for name in ("appprotocol-http-inference-pool", "primary-inference-pool"):
        assert "typed_extension_protocol_options" not in clusters[key[name]]
