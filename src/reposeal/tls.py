"""Mutual TLS between the machines: a private CA, certificates that carry a role.

The role (``enclave``, ``repo``, ``builder``, ``source``) is the certificate's
organizationalUnitName; servers authorize by the role of the *verified* client certificate.
Keys are ECDSA P-256, which every TLS stack accepts.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("enclave", "repo", "builder", "source", "maintainer")


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(folder: Path, name: str = "reposeal CA") -> Issued:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    issued = Issued(folder / "ca.pem", folder / "ca.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, issued.key)
    return issued


def issue(
    ca: Issued,
    folder: Path,
    name: str,
    role: str,
    *,
    server_ip: str | None = None,
    days: int = 365,
    addresses: Sequence[str] = (),
) -> Issued:
    """A certificate for ``name`` with ``role``; ``server_ip`` or ``addresses`` (IP addresses
    and DNS names, all in the certificate) make it a server certificate as well."""
    if role not in ROLES and role != "bridge":
        raise ValueError(f"unknown role {role!r}")
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    names = [*([server_ip] if server_ip is not None else []), *addresses]
    if names:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if addresses:  # a host's one certificate: its service, and its client calls
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([alt_name(n) for n in names]), critical=False
        ).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    issued = Issued(folder / f"{name}.pem", folder / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, issued.key)
    return issued


def alt_name(address: str) -> x509.GeneralName:
    """An IP address, or else a DNS name (checked: letters, digits, '-' and '.')."""
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        pass
    labels = address.split(".")
    if (
        not address
        or len(address) > 253
        or not all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        )
    ):
        raise ValueError(f"{address!r} is neither an IP address nor a DNS name")
    return x509.DNSName(address.lower())


def described(cert: Path) -> tuple[str, str, list[str]]:
    """The name, role and addresses a certificate was issued for (to renew it as it was)."""
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    name = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    role = parsed.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    try:
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        addresses += list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        addresses = []
    return str(name), str(role), addresses


def server_context(cert: Issued, client_ca: Path) -> ssl.SSLContext:
    """TLS 1.3 server that demands a client certificate from ``client_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert.cert, cert.key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Issued, pinned_ca: Path) -> ssl.SSLContext:
    """TLS 1.3 client presenting ``cert`` and trusting only ``pinned_ca`` (not the system)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert.cert, cert.key)
    ctx.load_verify_locations(pinned_ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def role_of(peercert: dict[str, object] | None) -> str | None:
    """The role in a verified peer certificate (as ``SSLSocket.getpeercert()`` returns it)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "organizationalUnitName" and value in (*ROLES, "bridge"):
                return str(value)
    return None


def name_of(peercert: dict[str, object] | None) -> str | None:
    """The common name in a verified peer certificate (who, within a role)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
