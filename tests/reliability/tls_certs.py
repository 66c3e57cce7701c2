"""Throwaway certificate authorities and certificates for TLS tests, made with the openssl CLI."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> Pem:
    """A self-signed CA certificate (valid for one day)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "1",
             "-subj", f"/CN={name} test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Pem(crt, key)


def make_cert(folder: Path, name: str, ca: Pem, *, expired: bool = False) -> Pem:
    """A certificate for localhost / 127.0.0.1 signed by ``ca``; ``expired`` makes one whose
    validity ended in the past (not before 2020-01-01, not after 2020-01-02)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")
    if not expired:
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
                 "-out", str(crt), "-days", "1", "-extfile", str(ext))
        return Pem(crt, key)
    # `openssl x509` cannot back-date; `openssl ca` can, with a throwaway database.
    db = folder / f"{name}-ca"
    db.mkdir(exist_ok=True)
    (db / "index.txt").write_text("")
    (db / "serial").write_text("01\n")
    conf = db / "ca.cnf"
    conf.write_text(f"""[ca]
default_ca = test
[test]
database = {db / 'index.txt'}
serial = {db / 'serial'}
new_certs_dir = {db}
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
""")
    _openssl("ca", "-batch", "-config", str(conf), "-cert", str(ca.cert), "-keyfile", str(ca.key), "-in", str(csr),
             "-out", str(crt), "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", str(ext),
             "-notext")
    return Pem(crt, key)
