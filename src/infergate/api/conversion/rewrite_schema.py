"""The schema of InferenceModelRewrite (GIE v1.2+, ``inference.networking.x-k8s.io/v1alpha2``),
as generated from :class:`infergate.api.inference_v1alpha2.InferenceModelRewrite` (the type the
CRD comparison checks against GIE v1.5.0's CRD). The converter emits this kind for weighted
``targetModels`` and validates what it emits against it.
"""

from __future__ import annotations

from typing import Any, Final

from infergate.api.inference_v1alpha2 import InferenceModelRewrite
from infergate.api.schema import schema_for
from infergate.api.validation import apply_schema_defaults, find_unknown_fields, validate_tree

MODEL_REWRITE_SCHEMA: Final[dict[str, Any]] = schema_for(InferenceModelRewrite)


def validate_model_rewrite(obj: dict[str, Any]) -> list[str]:
    """Problems with an InferenceModelRewrite object, API-server style (empty when valid)."""
    unknown = find_unknown_fields(obj, MODEL_REWRITE_SCHEMA)
    if unknown:
        return [f'unknown field "{path}"' for path in unknown]
    return [
        str(e) for e in validate_tree(apply_schema_defaults(obj, MODEL_REWRITE_SCHEMA), MODEL_REWRITE_SCHEMA)
    ]
