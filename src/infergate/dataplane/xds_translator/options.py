"""The knobs of the generated Envoy configuration."""

from __future__ import annotations

from dataclasses import dataclass

from infergate.api.limits import MAX_REQUEST_BODY_BYTES


@dataclass(frozen=True)
class TranslateOptions:
    """Knobs of the generated config; defaults follow envoy-extproc.md's recommendations."""

    ext_proc_message_timeout_s: float = 5.0  # Envoy's 200 ms default is too short for a Python EPP
    ext_proc_max_message_timeout_s: float = 300.0  # lets an EPP hold a request (override_message_timeout)
    ext_proc_grpc_timeout_s: float = 10.0
    # A FailClose pool whose EPP cannot be reached answers 500 and one whose EPP does not answer
    # within message_timeout answers 504: Envoy's ext_proc defaults, as upstream's reference
    # gateway config (GIE test/testdata/envoy.yaml) and upstream's gateways answer.
    ext_proc_status_on_error: int = 500
    ext_proc_response_header_mode: str = "SEND"  # SKIP hides responses: the EPP records none as completed
    ext_proc_response_body_mode: str = "NONE"  # stream lifetime still spans the response; never BUFFERED
    epp_connect_timeout_s: float = 0.25
    epp_health_check_interval_s: float = 1.0
    upstream_connect_timeout_s: float = 1.0
    stream_idle_timeout_s: float = 300.0  # bounds generations instead of a route timeout
    # Buffered bodies (ext_proc BUFFERED, transform): larger ones get 413. The EPP accepts this
    # much plus framing in one gRPC message (api.limits), so the two hops agree.
    max_request_bytes: int = MAX_REQUEST_BODY_BYTES
    retries: int = 2  # connect-failure retries; with override_host they go to the EPP's next pick
    access_log: str | None = "stdout"  # "stdout", a file path, or None

    def __post_init__(self) -> None:
        if self.epp_connect_timeout_s > 1.0:
            raise ValueError("epp_connect_timeout_s: must be at most 1 s so a dead EPP fails fast")
        for name in ("ext_proc_response_header_mode",):
            if getattr(self, name) not in ("SEND", "SKIP"):
                raise ValueError(f"{name}: must be SEND or SKIP")
        if self.ext_proc_response_body_mode not in ("NONE", "STREAMED", "FULL_DUPLEX_STREAMED"):
            raise ValueError("ext_proc_response_body_mode: must be NONE, STREAMED or FULL_DUPLEX_STREAMED")
