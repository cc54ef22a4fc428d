"""util.signals (waiting for SIGTERM/SIGINT on the loop) and util.tls (the reusable self-signed certificate)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from cryptography import x509

from infergate.util.signals import run_until_signal
from infergate.util.tls import ensure_certificate


async def test_run_until_signal_returns_the_signal_and_removes_its_handlers() -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run_until_signal(), 5) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the loop's handler is gone again


def test_certificate_covers_the_host_and_is_reused(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path, "10.1.2.3")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert key_path.stat().st_mode & 0o077 == 0
    assert ensure_certificate(tmp_path, "10.1.2.3") == (cert_path, key_path)
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number == cert.serial_number
    ensure_certificate(tmp_path, "example.internal")  # not covered: a new certificate
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number != cert.serial_number
