#!/usr/bin/env python3
"""Seal one value with an independent peer implementation of the
sealed-secrets hybrid format (RSA-OAEP-SHA256 + AES-256-GCM).

    peer_seal.py --peer NAME --cert CERT.pem \
        --scope strict|namespace-wide|cluster-wide \
        --namespace NS --name NAME --value-file FILE

Prints the base64 (standard, padded) sealed value on stdout.

Peers:
  kubesealpy               PyPI kubesealpy: Sealer.seal_value(); the library
                           builds the OAEP label itself from scope/ns/name.
  aes-gcm-rsa-oaep         PyPI aes-gcm-rsa-oaep: encrypt(plaintext, pubkey,
                           label); the library has no notion of scope, so the
                           label is built HERE (see label_for()).
  linode-kubeseal-encrypt  npm @linode/kubeseal-encrypt, run through
                           peer_seal.mjs with node (namespace-wide only, text
                           values only).

Exit codes: 0 ok; 1 the peer library failed; 2 usage/input error or peer
not installed; 3 the peer cannot do this scope (or this value).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys

PEERS = ("kubesealpy", "aes-gcm-rsa-oaep", "linode-kubeseal-encrypt")
SCOPES = ("strict", "namespace-wide", "cluster-wide")
HERE = os.path.dirname(os.path.abspath(__file__))


def die(code: int, msg: str) -> "None":
    print(f"peer_seal.py: {msg}", file=sys.stderr)
    sys.exit(code)


def label_for(scope: str, namespace: str | None, name: str | None) -> bytes:
    """Label per sealed-secrets: strict "ns/name", namespace-wide "ns",
    cluster-wide "" (only used for the aes-gcm-rsa-oaep peer)."""
    if scope == "cluster-wide":
        return b""
    if namespace is None:
        die(2, f"--namespace is required for scope {scope}")
    if scope == "namespace-wide":
        return namespace.encode("utf-8")
    if name is None:
        die(2, "--name is required for scope strict")
    return f"{namespace}/{name}".encode("utf-8")


def read_value(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        die(2, f"cannot read value file: {e}")


def seal_kubesealpy(a: argparse.Namespace, value: bytes) -> bytes:
    try:
        from kubesealpy import Sealer, SealingScope
    except ImportError as e:
        die(2, f"kubesealpy is not installed (pip install -r {HERE}/requirements.txt): {e}")
    scope = {
        "strict": SealingScope.STRICT,
        "namespace-wide": SealingScope.NAMESPACE_WIDE,
        "cluster-wide": SealingScope.CLUSTER_WIDE,
    }[a.scope]
    if a.scope != "cluster-wide" and a.namespace is None:
        die(2, f"--namespace is required for scope {a.scope}")
    if a.scope == "strict" and a.name is None:
        die(2, "--name is required for scope strict")
    try:
        # validate=False: do not reject expired / not-yet-valid test certs;
        # expiry policy is not what these interop tests are about.
        sealer = Sealer.from_certificate_file(a.cert, validate=False)
    except Exception as e:  # kubesealpy.CertificateError
        die(2, f"kubesealpy cannot load certificate {a.cert}: {e}")
    try:
        return sealer.seal_value(value, namespace=a.namespace, name=a.name, scope=scope)
    except Exception as e:
        die(1, f"kubesealpy failed: {e}")


def seal_aes_gcm_rsa_oaep(a: argparse.Namespace, value: bytes) -> bytes:
    try:
        import aes_gcm_rsa_oaep
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    except ImportError as e:
        die(2, "aes-gcm-rsa-oaep is not installed "
               f"(pip install --no-deps -r {HERE}/requirements-nodeps.txt): {e}")
    label = label_for(a.scope, a.namespace, a.name)
    try:
        with open(a.cert, "rb") as f:
            pub = x509.load_pem_x509_certificate(f.read()).public_key()
    except Exception as e:
        die(2, f"cannot load certificate {a.cert}: {e}")
    if not isinstance(pub, RSAPublicKey):
        die(2, "certificate key is not RSA")
    # The library passes label straight to OAEP; give None for the empty
    # label (same bytes on the wire, works on every cryptography version).
    try:
        return aes_gcm_rsa_oaep.encrypt(value, pub, label if label else None)
    except Exception as e:
        die(1, f"aes-gcm-rsa-oaep failed: {e}")


def seal_linode(argv: list[str]) -> "None":
    node = shutil.which("node")
    if node is None:
        die(2, "node is not installed (needed for linode-kubeseal-encrypt)")
    r = subprocess.run([node, os.path.join(HERE, "peer_seal.mjs"), *argv])
    sys.exit(r.returncode)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", required=True, choices=PEERS)
    p.add_argument("--cert", required=True, help="PEM X.509 certificate of the controller")
    p.add_argument("--scope", default="strict", choices=SCOPES)
    p.add_argument("--namespace")
    p.add_argument("--name")
    p.add_argument("--value-file", required=True, help="raw value bytes ('-' = stdin)")
    a = p.parse_args(argv)

    if a.peer == "linode-kubeseal-encrypt":
        seal_linode(argv)

    value = read_value(a.value_file)
    if a.peer == "kubesealpy":
        sealed = seal_kubesealpy(a, value)
    else:
        sealed = seal_aes_gcm_rsa_oaep(a, value)
    sys.stdout.write(base64.b64encode(sealed).decode("ascii") + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
