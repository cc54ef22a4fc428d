"""A test CA and the server certificates it signs, and Secrets of type kubernetes.io/tls holding them."""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerCertificate:
    hostname: str
    certificate_pem: str
    key_pem: str

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode()).public_bytes(serialization.Encoding.DER)

    def secret(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": base64.b64encode(self.certificate_pem.encode()).decode(),
                         "tls.key": base64.b64encode(self.key_pem.encode()).decode()}}


class TestCA:
    """A self-signed CA (EC P-256, one day) issuing server certificates for DNS names."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "infergate test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.pem)
        return context

    def issue(self, hostname: str) -> ServerCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self._name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return ServerCertificate(
            hostname,
            cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
        )

    def peer_certificate(self, address: str, port: int, server_name: str, timeout: float = 5.0) -> bytes:
        """The DER certificate the server presents on a new connection for SNI ``server_name``
        (verified against this CA and the name)."""
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                self.ssl_context().wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der
