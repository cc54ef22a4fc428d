"""Conversion from the preview inference API (v0.3.0) to GA (v1.0), on plain JSON objects.

* :mod:`.pool`: InferencePool ``inference.networking.x-k8s.io/v1alpha2`` <-> ``inference.networking.k8s.io/v1``
  (lossless round trip for valid objects).
* :mod:`.objective`: InferenceModel -> InferenceObjective (+ InferenceModelRewrite) and per-model route actions.
* :mod:`.route`: HTTPRoute / ReferenceGrant rewriting.
* :mod:`.manifests`: all of it over a set of manifests, as ``infergate convert`` runs it.

Every field the target cannot keep exactly is reported as a :class:`ConversionWarning`.
"""

from __future__ import annotations

from infergate.api.conversion.documents import Document, ManifestError, read_documents, write_json, write_yaml
from infergate.api.conversion.issues import ConversionError, ConversionWarning, FieldProblem, ObjectRef
from infergate.api.conversion.manifests import (
    OUTPUT_VERSIONS,
    ConvertOptions,
    ManifestConversion,
    OutputObject,
    api_validator,
    convert_documents,
    convert_objects,
)
from infergate.api.conversion.names import ga_pool_name, helm_epp_name
from infergate.api.conversion.objective import (
    TARGET_MODELS_MODES,
    ModelConversion,
    ModelRoute,
    PriorityMap,
    model_to_objective,
    select_oldest,
)
from infergate.api.conversion.pool import PoolConversion, pool_to_v1, pool_to_v1alpha2
from infergate.api.conversion.route import UNKNOWN_MODELS_MODES, convert_reference_grant, convert_route

__all__ = [
    "OUTPUT_VERSIONS",
    "TARGET_MODELS_MODES",
    "UNKNOWN_MODELS_MODES",
    "ConversionError",
    "ConversionWarning",
    "ConvertOptions",
    "Document",
    "FieldProblem",
    "ManifestConversion",
    "ManifestError",
    "ModelConversion",
    "ModelRoute",
    "ObjectRef",
    "OutputObject",
    "PoolConversion",
    "PriorityMap",
    "api_validator",
    "convert_documents",
    "convert_objects",
    "convert_reference_grant",
    "convert_route",
    "ga_pool_name",
    "helm_epp_name",
    "model_to_objective",
    "pool_to_v1",
    "pool_to_v1alpha2",
    "read_documents",
    "select_oldest",
    "write_json",
    "write_yaml",
]
