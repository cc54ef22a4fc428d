"""Gateway API hostname rules: listener/route intersection and wildcard coverage."""

from __future__ import annotations

from collections.abc import Sequence

ANY = "*"


def is_wildcard(hostname: str) -> bool:
    return hostname.startswith("*")


def covers(pattern: str, hostname: str) -> bool:
    """Whether every host matched by ``hostname`` is matched by ``pattern``.

    ``*`` covers everything; ``*.example.com`` covers ``a.example.com``,
    ``a.b.example.com`` and ``*.b.example.com`` but not ``example.com``.
    """
    if pattern in (ANY, hostname):
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return hostname.endswith(suffix) and len(hostname) > len(suffix)
    return False


def intersect(listener_hostname: str | None, route_hostnames: Sequence[str]) -> tuple[str, ...]:
    """The hostnames a route serves on a listener (empty = no intersection; ``("*",)`` = any)."""
    if not route_hostnames:
        return (listener_hostname or ANY,)
    if listener_hostname is None:
        return tuple(dict.fromkeys(route_hostnames))
    result: list[str] = []
    for hostname in route_hostnames:
        if covers(listener_hostname, hostname):
            result.append(hostname)
        elif covers(hostname, listener_hostname):
            result.append(listener_hostname)
    return tuple(dict.fromkeys(result))


def specificity(hostname: str) -> tuple[int, int]:
    """Sort key, larger = more specific: (characters of a non-wildcard hostname, characters)."""
    if hostname == ANY:
        return (0, 0)
    return (0 if is_wildcard(hostname) else len(hostname), len(hostname))
