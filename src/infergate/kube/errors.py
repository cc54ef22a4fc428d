"""One error hierarchy for every Kubernetes API call infergate makes.

:class:`KubeError` carries the HTTP status (0 when there was no answer), the Status
``reason`` and ``message`` and its ``details``. :func:`error_for` picks the subclass from the
status code (and, for 409, the reason), so callers catch what they mean::

    try: ...
    except NotFound: ...
    except Conflict: ...   # AlreadyExists is a Conflict
    except Gone: ...       # 410 Expired: relist
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A Kubernetes API request failed; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, message: str, *, reason: str = "", details: dict[str, Any] | None = None,
                 method: str = "", path: str = "") -> None:
        prefix = f"{method} {path}: " if method or path else ""
        code = " ".join(str(p) for p in (status or "", reason) if p)
        super().__init__(f"{prefix}{code}: {message}" if code else f"{prefix}{message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.method = method
        self.path = path


class ConfigError(KubeError):
    """No usable configuration (kubeconfig missing or invalid, not in a cluster)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message, reason="ConfigError")
        self.args = (message,)  # its text is the message alone: it is shown to people ("Error: cannot load ...")


class ConnectionFailed(KubeError):
    """The API server did not answer (connection refused or reset, timeout)."""


class BadRequest(KubeError):
    """400."""


class Unauthorized(KubeError):
    """401: no or bad credentials."""


class Forbidden(KubeError):
    """403: authenticated but not allowed."""


class NotFound(KubeError):
    """404: the object, or the resource (its CRD is not installed)."""


class MethodNotAllowed(KubeError):
    """405."""


class Conflict(KubeError):
    """409: a write lost a race (stale resourceVersion)."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: a create of an existing name."""


class Gone(KubeError):
    """410 Gone / Expired: the resourceVersion is too old; relist."""


class UnsupportedMediaType(KubeError):
    """415."""


class Invalid(KubeError):
    """422: the object failed validation (``details.causes`` lists the fields)."""


class TooManyRequests(KubeError):
    """429."""


class ServerError(KubeError):
    """5xx."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed, 409: Conflict,
    410: Gone, 415: UnsupportedMediaType, 422: Invalid, 429: TooManyRequests,
}


def error_class(status: int, reason: str = "") -> type[KubeError]:
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, KubeError)


def error_for(status: int, body: str | bytes | dict[str, Any] | None, *, method: str = "",
              path: str = "") -> KubeError:
    """The error for an HTTP answer (``body`` a Status object, or any text)."""
    status_obj: dict[str, Any] | None = None
    if isinstance(body, dict):
        status_obj = body
    elif body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        status_obj = parsed if isinstance(parsed, dict) else None
        if status_obj is None:
            return error_class(status)(status, text.strip()[:500], method=method, path=path)
    if status_obj is None:
        return error_class(status)(status, "", method=method, path=path)
    reason = str(status_obj.get("reason") or "")
    message = str(status_obj.get("message") or json.dumps(status_obj)[:500])
    details = status_obj.get("details")
    return error_class(status, reason)(status, message, reason=reason,
                                       details=details if isinstance(details, dict) else None,
                                       method=method, path=path)


def error_from_event(obj: dict[str, Any], *, path: str = "") -> KubeError:
    """The error an ``ERROR`` watch event carries (its object is a Status)."""
    code = obj.get("code")
    return error_for(code if isinstance(code, int) else 500, obj, method="WATCH", path=path)
