"""The lab's certificate authority and per-edge server and client certificates (openssl CLI).

Layout under ``<lab dir>/certs``::

    ca.pem  ca-key.pem            the lab CA (signs everything below)
    lab-1/server/{ca,cert,key}.pem   dockerd's --tlscacert/--tlscert/--tlskey
    lab-1/client/{ca,cert,key}.pem   what edgefleet and the docker/compose CLIs present

The client folder uses the names the docker and compose CLIs want in ``DOCKER_CERT_PATH``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from edgefleet.errors import LabError

Kind = Literal["server", "client"]
OPENSSL_TIMEOUT = 30.0
CA_DAYS = 3650
LEAF_DAYS = 825


def ca_config() -> str:
    """openssl config for the self-signed CA (no reliance on the system's openssl.cnf)."""
    return (
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "x509_extensions = v3_ca\n"
        "[dn]\n"
        "CN = edgefleet lab CA\n"
        "[v3_ca]\n"
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )


def leaf_extensions(kind: Kind) -> str:
    """The extension section (``[ext]``) for a server or client certificate.

    dockerd checks clients for ``clientAuth``; clients check the server for ``serverAuth``
    and for the address they dial (``IP:127.0.0.1``) in the subjectAltName.
    """
    lines = [
        "[ext]",
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        f"extendedKeyUsage = {'serverAuth' if kind == 'server' else 'clientAuth'}",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid:always",
    ]
    if kind == "server":
        lines.append("subjectAltName = IP:127.0.0.1, DNS:localhost")
    return "\n".join(lines) + "\n"


def _openssl(args: list[str], cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise LabError("the openssl command is missing: apt-get install -y openssl")
    try:
        out = subprocess.run(
            ["openssl", *args], cwd=cwd, capture_output=True, text=True,
            timeout=OPENSSL_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"openssl {args[0]} took longer than {OPENSSL_TIMEOUT:.0f} s") from exc
    if out.returncode != 0:
        raise LabError(f"openssl {args[0]} failed: {out.stderr.strip()[-500:]}")


def ensure_ca(certs_dir: Path) -> tuple[Path, Path]:
    """The lab CA (certificate, key), made once and reused."""
    certs_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = certs_dir / "ca.pem", certs_dir / "ca-key.pem"
    if ca.is_file() and ca_key.is_file():
        return ca, ca_key
    cfg = certs_dir / "ca.cnf"
    cfg.write_text(ca_config())
    _openssl(
        ["req", "-x509", "-new", "-config", str(cfg),
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(ca_key), "-out", str(ca), "-days", str(CA_DAYS), "-sha256"],
        certs_dir,
    )
    os.chmod(ca_key, 0o600)
    return ca, ca_key


def ensure_leaf(ca: Path, ca_key: Path, folder: Path, kind: Kind, common_name: str) -> Path:
    """``folder/{ca,cert,key}.pem`` for a server or client, made once and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, ca_copy = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    if not (cert.is_file() and key.is_file()):
        csr, ext = folder / "req.csr", folder / "ext.cnf"
        ext.write_text(leaf_extensions(kind))
        _openssl(
            ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}"],
            folder,
        )
        _openssl(
            ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(LEAF_DAYS),
             "-sha256", "-extfile", str(ext), "-extensions", "ext", "-out", str(cert)],
            folder,
        )
        csr.unlink(missing_ok=True)
        os.chmod(key, 0o600)
    if not ca_copy.is_file() or ca_copy.read_bytes() != ca.read_bytes():
        shutil.copyfile(ca, ca_copy)
    return folder


def ensure_edge_certs(certs_dir: Path, edge: str) -> tuple[Path, Path]:
    """(server folder, client folder) for one edge."""
    ca, ca_key = ensure_ca(certs_dir)
    server = ensure_leaf(ca, ca_key, certs_dir / edge / "server", "server", edge)
    client = ensure_leaf(ca, ca_key, certs_dir / edge / "client", "client", f"edgefleet@{edge}")
    return server, client
