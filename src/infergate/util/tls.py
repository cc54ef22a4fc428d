"""A self-signed serving certificate, kept in a directory and reused while it covers the host,
and the context HTTP clients verify servers with.

The certificate is used by the embedded API server (HTTPS for kubectl/helm) and by the EPP and
BBR (``--secure-serving`` without ``--cert-path``, as upstream makes one).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
from pathlib import Path

from infergate.util.files import write_private

CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"


def _covers(cert_pem: bytes, host: str) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    try:
        return ipaddress.ip_address(host) in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        return host in san.get_values_for_type(x509.DNSName)


def ensure_certificate(state_dir: Path, host: str) -> tuple[Path, Path]:
    """(cert path, key path) of a certificate valid for ``host``, 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert_path.exists() and key_path.exists() and _covers(cert_path.read_bytes(), host):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "infergate-apiserver")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        address = ipaddress.ip_address(host)
        if str(address) != "127.0.0.1":
            alt.append(x509.IPAddress(address))
    except ValueError:
        if host != "localhost":
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@functools.cache
def default_verify_context() -> ssl.SSLContext:
    """The context httpx verifies servers with by default (certifi's CAs, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``), built once per process. httpx builds one for every client: ~40 ms of CPU
    loading the CA bundle, which a client per probe window, per poll or per health check paid each
    time. Pass it as ``verify=``; a client that trusts other CAs builds its own. httpcore sets its
    ALPN list on the context for each TLS connection, so only HTTP/1.1 clients (all of infergate's)
    may share it: an ``http2=True`` client builds its own."""
    import httpx

    return httpx.create_ssl_context()
