"""Plain-data views of translation results (for golden files, logs and the admin endpoint).

The IR is written with ``infergate.ir.codec`` (fields equal to their default left out).
"""

from __future__ import annotations

from typing import Any

from infergate.controller.translator.options import TranslationResult
from infergate.ir import DataplaneConfig
from infergate.ir.codec import ir_to_dict

REDACTED = "<redacted>"


def ir_without_secrets(ir: DataplaneConfig) -> dict[str, Any]:
    """The IR as plain data with every certificate's private key replaced (the admin endpoint)."""
    plain: dict[str, Any] = ir_to_dict(ir)
    for certificate in plain.get("certificates") or ():
        certificate["private_key"] = REDACTED
    return plain


def result_to_plain(result: TranslationResult) -> dict[str, Any]:
    return {
        "ir": ir_to_dict(result.ir),
        "statuses": {str(ref): status for ref, status in sorted(result.statuses.items())},
    }
