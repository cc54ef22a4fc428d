"""util.signals (waiting for SIGTERM/SIGINT on the loop) and util.tls (the reusable self-signed certificate)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from infergate.util.signals import run_until_signal
from infergate.util.tls import default_verify_context, ensure_certificate


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


async def test_the_shared_verify_context_is_built_once_and_verifies_like_httpxs(tmp_path: Path) -> None:
    """Clients share one context (httpx built one per client, ~40 ms of CPU each) and it verifies as
    httpx's default does: the same CAs, the hostname checked, a self-signed server refused."""
    shared = default_verify_context()
    assert default_verify_context() is shared
    fresh = httpx.create_ssl_context()
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    assert shared.cert_store_stats() == fresh.cert_store_stats() and shared.cert_store_stats()["x509_ca"] > 0
    cert, key = ensure_certificate(tmp_path, "127.0.0.1")
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=serving)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(verify=shared, timeout=5) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/")
        own = ssl.create_default_context(cafile=str(cert))  # a client that trusts this CA builds its own
        async with httpx.AsyncClient(verify=own, timeout=5) as client:
            assert (await client.get(f"https://127.0.0.1:{port}/")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()
