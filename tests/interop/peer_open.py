#!/usr/bin/env python3
"""Open (decrypt) one base64 sealed-secrets value using ONLY Python
`cryptography` (independent of kvseal and of the peer sealers).

    peer_open.py --key KEY.pem --label LABEL --ciphertext-file FILE

KEY.pem: RSA private key, PKCS#1 ("BEGIN RSA PRIVATE KEY") or PKCS#8
("BEGIN PRIVATE KEY"), unencrypted. LABEL: the OAEP label, "ns/name"
(strict), "ns" (namespace-wide) or "" (cluster-wide); UTF-8 encoded.
FILE holds the base64 (standard alphabet, padded; surrounding whitespace and
newlines are ignored) of: u16-BE len(rsa_ct) || rsa_ct || AES-256-GCM
ciphertext+tag (zero 12-byte nonce, no AAD). '-' reads stdin.

Writes the raw plaintext bytes to stdout. Exit 0 on success, 1 on any
decryption / format failure, 2 on usage / input errors.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def die(code: int, msg: str) -> "None":
    print(f"peer_open.py: {msg}", file=sys.stderr)
    sys.exit(code)


def open_sealed(blob: bytes, key: RSAPrivateKey, label: bytes) -> bytes:
    if len(blob) < 2:
        raise ValueError("ciphertext too short: no length prefix")
    n = int.from_bytes(blob[:2], "big")
    if n != key.key_size // 8:
        raise ValueError(f"RSA ciphertext length {n} != key modulus size {key.key_size // 8}")
    if len(blob) < 2 + n + 16:
        raise ValueError("ciphertext too short for RSA block + GCM tag")
    rsa_ct, aes_ct = blob[2:2 + n], blob[2 + n:]
    session_key = key.decrypt(
        rsa_ct,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()),
                     algorithm=hashes.SHA256(),
                     label=label if label else None),
    )
    if len(session_key) != 32:
        raise ValueError(f"session key is {len(session_key)} bytes, want 32")
    return AESGCM(session_key).decrypt(b"\x00" * 12, aes_ct, None)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--ciphertext-file", required=True)
    a = p.parse_args(argv)

    try:
        with open(a.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        die(2, f"cannot load private key {a.key}: {e}")
    if not isinstance(key, RSAPrivateKey):
        die(2, "private key is not RSA")

    try:
        if a.ciphertext_file == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(a.ciphertext_file, "rb") as f:
                text = f.read()
    except OSError as e:
        die(2, f"cannot read ciphertext file: {e}")

    try:
        blob = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        die(1, f"ciphertext is not valid standard base64: {e}")

    try:
        plain = open_sealed(blob, key, a.label.encode("utf-8"))
    except InvalidTag:
        die(1, "AES-GCM authentication failed")
    except ValueError as e:  # includes OAEP decryption failure (wrong key/label)
        die(1, f"decryption failed: {e or 'RSA-OAEP decryption failed (wrong key or label?)'}")

    sys.stdout.buffer.write(plain)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
