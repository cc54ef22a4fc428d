"""A self-signed serving certificate for the embedded API server.

client-go (kubectl, helm) does not send a bearer token over plain HTTP, so the server
speaks HTTPS with a self-signed certificate for its loopback address; the generated
kubeconfig carries it as ``certificate-authority-data``. The certificate and key are kept
in the state directory and reused while they cover the listen address.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from infergate.util.tls import CERT_NAME, KEY_NAME, ensure_certificate

__all__ = ["CERT_NAME", "KEY_NAME", "ensure_certificate", "server_context"]


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_path), str(key_path))
    context.set_alpn_protocols(["http/1.1"])
    return context
