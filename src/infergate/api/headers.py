"""The HTTP header names and Envoy metadata keys of the Gateway API Inference Extension.

The one place they are spelled: the conversion, the xDS translator, the EPP, body-based routing,
the benchmarks and the tests import them from here. Names are lower case (HTTP/2 and Envoy
compare them case-insensitively).
"""

from __future__ import annotations

from typing import Final

# Set by the EPP: the endpoint(s) ("ip:port", comma-separated for fallbacks) Envoy must send to.
DESTINATION_ENDPOINT: Final = "x-gateway-destination-endpoint"
# The EPP's subset hint: the endpoints the gateway may choose from (metadata key and header).
DESTINATION_ENDPOINT_SUBSET: Final = "x-gateway-destination-endpoint-subset"
# Reported back by the data plane: the endpoint that served the request.
DESTINATION_ENDPOINT_SERVED: Final = "x-gateway-destination-endpoint-served"
# Conformance tests only: the EPP's test plugin copies the served endpoint into this response header.
CONFORMANCE_TEST_SERVED_ENDPOINT: Final = "x-conformance-test-served-endpoint"
# Set by body-based routing from the body's "model"; HTTPRoute rules match it.
MODEL_NAME: Final = "x-gateway-model-name"
# Read by the v1.0 EPP: the InferenceObjective (by metadata.name) that gives the request its priority.
INFERENCE_OBJECTIVE: Final = "x-gateway-inference-objective"
# Read by the v1.0 EPP: replaces the body's "model" before scheduling.
MODEL_NAME_REWRITE: Final = "x-gateway-model-name-rewrite"
# Read by the EPP's flow control: the fairness flow a request belongs to.
INFERENCE_FAIRNESS_ID: Final = "x-gateway-inference-fairness-id"
REQUEST_ID: Final = "x-request-id"

# Headers only the EPP may set: a route cannot set, add or remove them, a client's are stripped.
EPP_OWNED: Final = frozenset({DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_SUBSET})

# Envoy dynamic-metadata namespaces the EPP writes.
LB_METADATA_NAMESPACE: Final = "envoy.lb"
SUBSET_HINT_METADATA_NAMESPACE: Final = "envoy.lb.subset_hint"
