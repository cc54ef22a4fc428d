"""``metav1.Status`` errors, shaped as kubectl prints them."""

from __future__ import annotations

from typing import Any

from infergate.apiserver.validation import FieldCause


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(group_resource: str, name: str, group: str, resource: str) -> APIError:
    return APIError(404, "NotFound", f'{group_resource} "{name}" not found',
                    {"name": name, "group": group, "kind": resource})


def already_exists(group_resource: str, name: str, group: str, resource: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{group_resource} "{name}" already exists',
                    {"name": name, "group": group, "kind": resource})


def conflict(group_resource: str, name: str, group: str, resource: str) -> APIError:
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {group_resource} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    {"name": name, "group": group, "kind": resource})


def apply_conflict(message: str, causes: list[dict[str, str]]) -> APIError:
    """The 409 of an apply that would change fields other managers own (``NewApplyConflict``:
    no name or kind in the details, one ``FieldManagerConflict`` cause per field)."""
    return APIError(409, "Conflict", message, {"causes": causes})


def invalid(kind: str, name: str, group: str, causes: list[FieldCause]) -> APIError:
    text = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    return APIError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {text}' if group
                    else f'{kind} "{name}" is invalid: {text}',
                    {"name": name, "group": group, "kind": kind, "causes": [c.to_json() for c in causes]})


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)
