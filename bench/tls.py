"""TLS for a run: a throwaway certificate authority and a server certificate for loopback, made
with trustme, and the client's side (the context it verifies with, what a connection agreed).

Nothing here starts anything or opens a socket; ``make_certificates`` writes three files.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

# The names the server certificate is valid for: every way a client here reaches a server.
SERVER_NAMES = ("127.0.0.1", "::1", "localhost")
CA_FILE = "ca.pem"
CERT_FILE = "server-chain.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True)
class Certificates:
    """Where a run's certificates are: the CA to trust, the server's chain (leaf first) and key
    (the servers' ``--tls-cert`` and ``--tls-key``)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A fresh CA and a server certificate for SERVER_NAMES, written into ``folder`` (which must
    exist) and nowhere else. The key file is readable by its owner only."""
    authority = trustme.CA()
    server = authority.issue_cert(*SERVER_NAMES)
    certificates = Certificates(folder / CA_FILE, folder / CERT_FILE, folder / KEY_FILE)
    authority.cert_pem.write_to_path(certificates.ca)
    certificates.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    descriptor = os.open(certificates.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(server.private_key_pem.bytes())
    return certificates


def client_context(ca: Path | None, insecure: bool = False) -> ssl.SSLContext:
    """A client's context: it verifies the server's certificate and name against ``ca`` (None:
    the system's trusted CAs), with Python's defaults otherwise (TLS 1.2 or 1.3).

    ``insecure``: it verifies NOTHING (no certificate, no name; ``ca`` is not read), so any
    server, or anyone in between, is accepted. Only for measuring a server whose certificate
    cannot be verified; a caller that uses it must say so wherever the results go."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca)


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[str, str]:
    """``(tls_version, cipher)`` of an established connection, e.g. ``("TLSv1.3",
    "TLS_AES_256_GCM_SHA384")``; ValueError before the handshake has completed."""
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    if version is None or cipher is None:
        raise ValueError("no TLS handshake has completed on this connection")
    return version, cipher[0]
