"""bench.tls: a run's certificates, the client's context and what a connection agreed, checked
by TLS handshakes in memory (ssl.MemoryBIO pairs: no socket, no process)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from bench.tls import (
    SERVER_NAMES,
    Certificates,
    client_context,
    describe,
    make_certificates,
)

# A handshake in memory takes a few round trips; more means it is stuck.
MAX_FLIGHTS = 20


def server_context(certificates: Certificates) -> ssl.SSLContext:
    """What the servers serve with (servers.common.server_tls_context)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert, certificates.key)
    return context


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, name: str) -> ssl.SSLObject:
    """Run a TLS handshake between ``client`` (asking for ``name``) and ``server`` in memory;
    the client's end, established. Raises the side's SSLError when one refuses."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, from_client, server_hostname=name)
    server_end = server.wrap_bio(to_server, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(MAX_FLIGHTS):
        for side, end in (("client", client_end), ("server", server_end)):
            if not done[side]:
                try:
                    end.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        # Carry each side's output to the other.
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            return client_end
    raise AssertionError("the handshake did not complete")


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def test_certificates_are_three_files_in_the_folder_and_nowhere_else(tmp_path: Path) -> None:
    made = make_certificates(tmp_path)
    assert {made.ca, made.cert, made.key} == set(tmp_path.iterdir())
    assert made.ca.name == "ca.pem"
    assert made.key.stat().st_mode & 0o077 == 0  # the key: its owner's only
    assert made.cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in made.key.read_bytes()


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_a_client_trusting_the_ca_verifies_the_server_for_every_loopback_name(
    certificates: Certificates, name: str
) -> None:
    client = client_context(certificates.ca, insecure=False)
    established = handshake(client, server_context(certificates), name)
    assert describe(established)[0] == "TLSv1.3"
    assert established.getpeercert() is not None


def test_describe_gives_the_version_and_the_cipher_name(certificates: Certificates) -> None:
    established = handshake(
        client_context(certificates.ca), server_context(certificates), "localhost"
    )
    agreed = established.cipher()
    assert agreed is not None
    version, cipher = describe(established)
    assert (version, cipher) == (established.version(), agreed[0])
    assert cipher.startswith("TLS_")  # a TLS 1.3 suite name


def test_describe_refuses_a_connection_before_its_handshake(certificates: Certificates) -> None:
    unstarted = client_context(certificates.ca).wrap_bio(
        ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost"
    )
    with pytest.raises(ValueError, match="no TLS handshake"):
        describe(unstarted)


def test_a_client_trusting_another_ca_refuses_the_server(
    certificates: Certificates, tmp_path: Path
) -> None:
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    other = make_certificates(other_folder)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client_context(other.ca), server_context(certificates), "localhost")


def test_a_name_the_certificate_does_not_carry_is_refused(certificates: Certificates) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client_context(certificates.ca), server_context(certificates), "example.org")


def test_the_system_store_does_not_know_a_run_ca(certificates: Certificates) -> None:
    client = client_context(None)
    assert client.verify_mode is ssl.CERT_REQUIRED and client.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client, server_context(certificates), "localhost")


def test_insecure_verifies_nothing(certificates: Certificates) -> None:
    client = client_context(None, insecure=True)
    assert client.verify_mode is ssl.CERT_NONE and not client.check_hostname
    established = handshake(client, server_context(certificates), "example.org")
    assert describe(established)[0] == "TLSv1.3"
