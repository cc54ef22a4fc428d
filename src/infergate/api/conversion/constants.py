"""Names the converters share: API groups and versions, request headers, annotation keys."""

from __future__ import annotations

from typing import Final

PREVIEW_GROUP: Final = "inference.networking.x-k8s.io"
GA_GROUP: Final = "inference.networking.k8s.io"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"

PREVIEW_POOL_API_VERSION: Final = f"{PREVIEW_GROUP}/v1alpha2"
GA_POOL_API_VERSION: Final = f"{GA_GROUP}/v1"
OBJECTIVE_API_VERSION: Final = f"{PREVIEW_GROUP}/v1alpha2"  # InferenceObjective lives in x-k8s.io at v1.0.0
MODEL_REWRITE_API_VERSION: Final = f"{PREVIEW_GROUP}/v1alpha2"  # InferenceModelRewrite (upstream v1.2+)

POOL_KIND: Final = "InferencePool"
MODEL_KIND: Final = "InferenceModel"
OBJECTIVE_KIND: Final = "InferenceObjective"
MODEL_REWRITE_KIND: Final = "InferenceModelRewrite"
HTTPROUTE_KIND: Final = "HTTPRoute"
REFERENCE_GRANT_KIND: Final = "ReferenceGrant"

# infergate.api.headers.MODEL_NAME as the HTTPRoutes the conversion writes spell it (upstream's casing;
# header matches are case-insensitive). The other GIE header names come from infergate.api.headers.
MODEL_NAME_HEADER: Final = "X-Gateway-Model-Name"

# The EPP's ext_proc port; v0.3.0 says implementations SHOULD infer it when extensionRef.portNumber is unset.
DEFAULT_EPP_PORT: Final = 9002

# Carries what a v1 InferencePool cannot express, so that v1alpha2 -> v1 -> v1alpha2 is lossless.
ROUND_TRIP_ANNOTATION: Final = "conversion.infergate.io/v1alpha2"

# Gateway API v1.3.0 HTTPRoute limits (standard channel CRD).
MAX_RULES_PER_ROUTE: Final = 16
MAX_MATCHES_PER_ROUTE: Final = 128
MAX_SET_HEADERS: Final = 16
MAX_BACKEND_REFS: Final = 16
MAX_BACKEND_WEIGHT: Final = 1_000_000
