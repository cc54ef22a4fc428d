"""The schema of upstream's InferenceModelRewrite (GIE v1.2+, ``apix/v1alpha2/inferencemodelrewrite_types.go``).

GIE v1.0.0 has no such kind, so ``infergate.api`` does not model it; the converter emits it for
weighted ``targetModels`` and validates what it emits against this openAPIV3Schema.
"""

from __future__ import annotations

from typing import Any

from infergate.api.validation import apply_schema_defaults, find_unknown_fields, validate_tree

MODEL_REWRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["poolRef", "rules"],
            "properties": {
                "poolRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "group": {
                            "type": "string",
                            "default": "inference.networking.k8s.io",
                            "maxLength": 253,
                        },
                        "kind": {
                            "type": "string",
                            "default": "InferencePool",
                            "maxLength": 63,
                            "minLength": 1,
                        },
                        "name": {"type": "string", "maxLength": 253, "minLength": 1},
                    },
                },
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "matches": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "model": {
                                            "type": "object",
                                            "required": ["value"],
                                            "properties": {
                                                "type": {
                                                    "type": "string",
                                                    "enum": ["Exact"],
                                                    "default": "Exact",
                                                },
                                                "value": {"type": "string", "minLength": 1},
                                            },
                                        }
                                    },
                                },
                            },
                            "targets": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["modelRewrite"],
                                    "properties": {
                                        "weight": {"type": "integer", "minimum": 1, "maximum": 1000000},
                                        "modelRewrite": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "status": {"type": "object"},
    },
}


def validate_model_rewrite(obj: dict[str, Any]) -> list[str]:
    """Problems with an InferenceModelRewrite object, API-server style (empty when valid)."""
    unknown = find_unknown_fields(obj, MODEL_REWRITE_SCHEMA)
    if unknown:
        return [f'unknown field "{path}"' for path in unknown]
    return [
        str(e) for e in validate_tree(apply_schema_defaults(obj, MODEL_REWRITE_SCHEMA), MODEL_REWRITE_SCHEMA)
    ]
