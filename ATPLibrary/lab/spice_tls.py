"""The lab's SPICE TLS files: a CA and a server certificate for QEMU's SPICE servers on 127.0.0.1.

QEMU reads ``ca-cert.pem``, ``server-cert.pem`` and ``server-key.pem`` from the folder that qemu.conf's
``spice_tls_x509_cert_dir`` names (with ``spice_tls = 1`` libvirt gives every SPICE domain a tlsPort).
Clients trust ``ca-cert.pem`` (``${SPICE_CA_FILE}`` in the lab variables).  The files are made once and
reused while they are valid; anything missing, unreadable, expiring or not matching is made again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ATPLibrary.errors import LabError

DIR_NAME = "spice-tls"
CA_CERT = "ca-cert.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
#: What the server certificate names: the lab's SPICE servers listen on 127.0.0.1 only.
SERVER_IP = "127.0.0.1"
SERVER_DNS = "localhost"
VALID_DAYS = 3650
#: Files that expire sooner than this are made again.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class SpiceTlsFiles:
    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    created: bool  # True when this call made the files


def tls_dir(lab_dir: Path) -> Path:
    return lab_dir / DIR_NAME


def ensure_spice_tls(lab_dir: Path, now: dt.datetime | None = None) -> SpiceTlsFiles:
    """Make (or reuse, when valid) the CA and server certificate in ``<lab_dir>/spice-tls``."""
    directory = tls_dir(lab_dir)
    files = SpiceTlsFiles(directory, directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY, False)
    now = now or dt.datetime.now(dt.UTC)
    if problem(files, now) is None:
        return files
    _generate(files, now)
    still = problem(files, now)
    if still is not None:  # pragma: no cover - would be a bug in _generate
        raise LabError(f"the SPICE TLS files made in {directory} are not valid: {still}")
    return SpiceTlsFiles(files.directory, files.ca_cert, files.server_cert, files.server_key, True)


def problem(files: SpiceTlsFiles, now: dt.datetime | None = None) -> str | None:
    """Why the files cannot be used as they are, or None when they are valid for the lab."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
    except FileNotFoundError as exc:
        return f"{exc.filename} is missing"
    except (OSError, ValueError, TypeError) as exc:
        return f"a file does not load ({exc})"
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key().public_numbers() != _rsa_numbers(server):
        return f"{files.server_key.name} is not the key of {files.server_cert.name}"
    for name, cert in ((files.ca_cert.name, ca), (files.server_cert.name, server)):
        if cert.not_valid_before_utc > now or cert.not_valid_after_utc - RENEW_BEFORE < now:
            return f"{name} is not valid now or expires within {RENEW_BEFORE.days} days"
    if server.issuer != ca.subject:
        return f"{files.server_cert.name} was not issued by {files.ca_cert.name}"
    ca_key = ca.public_key()
    if not isinstance(ca_key, rsa.RSAPublicKey) or server.signature_hash_algorithm is None:
        return f"{files.ca_cert.name} has no RSA key"
    try:
        ca_key.verify(
            server.signature, server.tbs_certificate_bytes, padding.PKCS1v15(), server.signature_hash_algorithm
        )
    except Exception:  # cryptography raises InvalidSignature
        return f"{files.server_cert.name} is not signed by {files.ca_cert.name}"
    try:
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return f"{files.server_cert.name} lacks subjectAltName or extendedKeyUsage"
    if ipaddress.ip_address(SERVER_IP) not in san.get_values_for_type(x509.IPAddress):
        return f"{files.server_cert.name} does not name IP {SERVER_IP}"
    if SERVER_DNS not in san.get_values_for_type(x509.DNSName):
        return f"{files.server_cert.name} does not name DNS {SERVER_DNS}"
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        return f"{files.server_cert.name} is not for serverAuth"
    if files.server_key.stat().st_mode & 0o077:
        return f"{files.server_key.name} is readable by others"
    return None


def _rsa_numbers(cert: x509.Certificate) -> object:
    public = cert.public_key()
    return public.public_numbers() if isinstance(public, rsa.RSAPublicKey) else None


def new_ca(common_name: str, now: dt.datetime | None = None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A self-signed RSA-2048 CA (``CA:TRUE``, keyCertSign); also used by tests for an unrelated CA."""
    now = now or dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _generate(files: SpiceTlsFiles, now: dt.datetime) -> None:
    ca_key, ca_cert = new_ca("ATPLibrary lab SPICE CA", now)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_IP)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(SERVER_IP)), x509.DNSName(SERVER_DNS)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files.directory.mkdir(parents=True, exist_ok=True)
    _write(files.server_key, _key_pem(key), 0o600)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # The CA key is not kept: a new server certificate means a new CA (clients read the CA from the lab).


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def write_ca_file(path: Path, common_name: str = "unrelated CA") -> Path:
    """Write a fresh self-signed CA certificate to ``path`` (for tests of a wrong CA)."""
    _key, cert = new_ca(common_name)
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (the key is never readable by others, not even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)
