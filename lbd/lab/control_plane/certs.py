"""The certificates and keys of one control-plane run, made fresh each time (nothing is reused).

Like envtest's tiny CA (controller-runtime ``pkg/internal/testing/certs``): ECDSA P-256 keys, a
week of validity, made in-process with ``cryptography``:

- one CA that signs the serving certificate and the client certificates (kube-apiserver's
  ``--client-ca-file`` is this CA); clients trust it as ``certificate-authority``;
- the serving certificate of kube-apiserver (and of the fault proxy in front of it): valid for
  ``localhost``, ``127.0.0.1``, ``::1``, the address it binds, and the names and first address
  a Service ``kubernetes.default`` would use, so in-cluster clients verify it as on a cluster;
- client certificates: CN is the user name, O the groups (``system:masters`` bypasses RBAC);
- the service-account signing key pair (``--service-account-signing-key-file`` and
  ``--service-account-key-file``), which makes TokenRequest work.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=7)
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A PEM certificate and its PEM private key (mode 0600)."""

    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*allowed: str) -> x509.KeyUsage:
    """The KeyUsage extension that allows exactly ``allowed`` (its constructor takes all nine)."""
    return x509.KeyUsage(**{usage: usage in allowed for usage in _KEY_USAGES})


class Pki:
    """The CA, serving, client and service-account material of one run, under ``directory``."""

    def __init__(
        self, directory: Path, hosts: Sequence[str], service_ips: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        # A minute of slack: a certificate "not yet valid" on a host whose clock just stepped.
        self._not_before = now - datetime.timedelta(minutes=1)
        self._not_after = now + VALIDITY
        self._ca_key = _key()
        ca_name = _name("lbd-test-ca")
        self._ca_cert = (
            self._builder(ca_name, self._ca_key.public_key())
            .issuer_name(ca_name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                _key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self._write("ca", self._ca_cert, self._ca_key)
        self.serving = self.issue(
            "kube-apiserver",
            "kube-apiserver",
            server_names=[*hosts, "localhost", "127.0.0.1", "::1", *service_ips, *SERVICE_NAMES],
        )
        sa_key = _key()
        self.sa_key = directory / "sa.key"
        _write_key(self.sa_key, sa_key)
        self.sa_pub = directory / "sa.pub"
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
        )

    def _write(
        self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> CertFiles:
        files = CertFiles(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files.key, key)
        return files

    def issue(
        self,
        stem: str,
        common_name: str,
        groups: Iterable[str] = (),
        *,
        server_names: Sequence[str] = (),
    ) -> CertFiles:
        """A certificate signed by the CA: a client certificate for user ``common_name`` in
        ``groups``, or, with ``server_names``, a serving certificate valid for those names."""
        key = _key()
        builder = (
            self._builder(_name(common_name, groups), key.public_key())
            .issuer_name(self._ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server_names:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_alt_names(server_names)), critical=False
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return self._write(stem, builder.sign(self._ca_key, hashes.SHA256()), key)
