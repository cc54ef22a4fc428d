"""What an IR must satisfy before a data plane can serve it.

The controller's translator never produces an IR that breaks these rules; an IR read from a
file (golden tests, debugging) or built by hand (benchmarks) may. ``problems`` lists every
broken rule, in a stable order (listeners first, then routes), each naming its path.
"""

from __future__ import annotations

from infergate.ir.types import DataplaneConfig, Listener

REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})


class InvalidIR(ValueError):
    """The IR breaks a rule a data plane needs (e.g. two listeners on one address and port)."""


def problems(config: DataplaneConfig) -> list[str]:
    """Every rule ``config`` breaks; empty when it can be served."""
    found = _listener_problems(config.listeners)
    found.extend(_tls_problems(config))
    for listener in config.listeners:
        for vhost in listener.virtual_hosts:
            for route in vhost.routes:
                redirect = route.redirect
                if redirect is not None and redirect.status_code not in REDIRECT_STATUS_CODES:
                    found.append(f"{route.key}.redirect.statusCode: {redirect.status_code} is not a redirect status")
    return found


def validate(config: DataplaneConfig) -> None:
    """Raise ``InvalidIR`` with the first problem of ``config``, if any."""
    found = problems(config)
    if found:
        raise InvalidIR(found[0])


def _listener_problems(listeners: tuple[Listener, ...]) -> list[str]:
    found: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    names: set[str] = set()
    for listener in listeners:
        domains: dict[str, str] = {}
        for index, vhost in enumerate(listener.virtual_hosts):
            for domain in vhost.domains or ("*",):
                if domain.lower() in domains:
                    found.append(
                        f"listeners[{listener.key}].virtual_hosts[{index}].domains: {domain!r} is already "
                        f"served by virtual host {domains[domain.lower()]!r} (Envoy needs unique domains per listener)"
                    )
                    continue
                domains[domain.lower()] = vhost.name
        if listener.key in names:
            found.append(f"listeners[{listener.key}]: duplicate listener key")
        names.add(listener.key)
        where = (listener.address, listener.port)
        if where in seen:
            found.append(
                f"listeners[{listener.key}].port: {listener.address}:{listener.port} is already "
                f"used by listener {seen[where]}"
            )
        else:
            seen[where] = listener.key
    return found


def _tls_problems(config: DataplaneConfig) -> list[str]:
    found: list[str] = []
    certificates = {certificate.key for certificate in config.certificates}
    for listener in config.listeners:
        names: dict[str, str] = {}
        for index, chain in enumerate(listener.tls):
            path = f"listeners[{listener.key}].tls[{index}]"
            if not chain.certificates:
                found.append(f"{path}.certificates: Required value")
            for key in chain.certificates:
                if key not in certificates:
                    found.append(f"{path}.certificates: {key!r} is not in the config's certificates")
            for server_name in chain.server_names or ("",):
                if server_name.lower() in names:
                    what = repr(server_name) if server_name else "the catch-all (no server name)"
                    found.append(f"{path}.server_names: {what} is already served by {names[server_name.lower()]!r}")
                else:
                    names[server_name.lower()] = chain.name
    return found
