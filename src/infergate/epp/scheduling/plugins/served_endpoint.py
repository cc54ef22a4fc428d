"""``destination-endpoint-served-verifier`` (upstream's test plugin, conformance only): copies
the endpoint the gateway reports as having served a response (``envoy.lb`` /
``x-gateway-destination-endpoint-served`` in the ext_proc metadata) into the
``x-conformance-test-served-endpoint`` response header, so the conformance client can check it.
A gateway that does not report it gets upstream's ``fail: ...`` value, never the EPP's own pick.
Not for production: it tells clients the pod addresses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate.api import headers
from infergate.epp.scheduling.framework import Plugin, PluginHandle
from infergate.epp.scheduling.plugins.params import check_keys

MISSING = "fail: missing destination endpoint served metadata"


class DestinationEndpointServedVerifier(Plugin):
    type_name = "destination-endpoint-served-verifier"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> DestinationEndpointServedVerifier:
        check_keys(params, ())
        return cls(name)

    def response_headers(self, served_endpoint: str | None) -> Mapping[str, str]:
        return {headers.CONFORMANCE_TEST_SERVED_ENDPOINT: served_endpoint or MISSING}
