"""IR validation: every rule an IR breaks, named by its path, in a stable order."""

from __future__ import annotations

import pytest

from infergate.ir import (
    Backend,
    DataplaneConfig,
    Listener,
    Redirect,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.ir.validation import InvalidIR, problems, validate


def _listener(key: str, port: int, *vhosts: VirtualHost) -> Listener:
    return Listener(key, "d", key, "127.0.0.1", port, vhosts)


def test_a_valid_ir_has_no_problems() -> None:
    route = Route("r", RouteMatch(), (Backend("service", 1, "service/d/s/80"),),
                  redirect=Redirect(status_code=301))
    ir = DataplaneConfig(listeners=(_listener("gw/a", 80, VirtualHost("v", ("*",), (route,))),
                                    _listener("gw/b", 81)))
    assert problems(ir) == []
    validate(ir)


def test_every_problem_is_listed_listeners_first_then_routes() -> None:
    bad_redirect = Route("httproute/d/r/rule/0/match/0", RouteMatch(), (), redirect=Redirect(status_code=200))
    ir = DataplaneConfig(listeners=(
        _listener("gw/a", 80, VirtualHost("one", ("a.example.com",), (bad_redirect,)),
                  VirtualHost("two", ("A.example.com",), ())),
        _listener("gw/a", 81),
        _listener("gw/c", 80),
    ))
    assert problems(ir) == [
        "listeners[gw/a].virtual_hosts[1].domains: 'A.example.com' is already served by virtual host 'one' "
        "(Envoy needs unique domains per listener)",
        "listeners[gw/a]: duplicate listener key",
        "listeners[gw/c].port: 127.0.0.1:80 is already used by listener gw/a",
        "httproute/d/r/rule/0/match/0.redirect.statusCode: 200 is not a redirect status",
    ]
    with pytest.raises(InvalidIR, match=r"virtual_hosts\[1\]\.domains"):
        validate(ir)


def test_an_empty_domain_list_counts_as_the_wildcard() -> None:
    ir = DataplaneConfig(listeners=(_listener("gw/a", 80, VirtualHost("one", (), ()), VirtualHost("two", ("*",), ())),))
    assert problems(ir) == [
        "listeners[gw/a].virtual_hosts[1].domains: '*' is already served by virtual host 'one' "
        "(Envoy needs unique domains per listener)"
    ]
