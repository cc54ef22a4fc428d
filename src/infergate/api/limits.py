"""The request-size limit of the data path, one number for every hop.

A request body is buffered whole by Envoy (ext_proc ``BUFFERED``: the EPP schedules on the
parsed body) and sent to the EPP in one gRPC message. Envoy answers 413 to a body larger than
``MAX_REQUEST_BODY_BYTES``; the EPP's gRPC server accepts messages up to
``EXT_PROC_MAX_MESSAGE_BYTES``, the body plus room for the ext_proc framing (the
``ProcessingRequest`` around the body, attributes, metadata), so every body Envoy lets through
reaches the EPP. See docs/security.md, "Data path".
"""

from __future__ import annotations

MAX_REQUEST_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body the gateway accepts (4 MiB, gRPC's default message size)."""

EXT_PROC_FRAMING_BYTES = 64 * 1024
"""Room for the ``ProcessingRequest`` around a body in one ext_proc message."""

EXT_PROC_MAX_MESSAGE_BYTES = MAX_REQUEST_BODY_BYTES + EXT_PROC_FRAMING_BYTES
"""The EPP's gRPC receive limit: a whole ``MAX_REQUEST_BODY_BYTES`` body and its framing."""
