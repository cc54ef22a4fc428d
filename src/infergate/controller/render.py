"""Plain-data views of translation results (for golden files, logs and the admin endpoint).

Fields equal to their dataclass default are left out, so the output shows what matters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from infergate.controller.translator.options import TranslationResult


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and item == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and item == f.default_factory():
                continue
            out[f.name] = to_plain(item)
        return out
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def result_to_plain(result: TranslationResult) -> dict[str, Any]:
    return {
        "ir": to_plain(result.ir),
        "statuses": {str(ref): status for ref, status in sorted(result.statuses.items())},
    }
