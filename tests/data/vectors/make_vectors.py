#!/usr/bin/env python3
"""Makes kvseal's known-answer vectors with an independent implementation (Python
`cryptography`), so that the Rust tests check kvseal against code it does not share.

Run once from this directory with the interop virtualenv:
    ../../../target/interop-venv/bin/python make_vectors.py
It writes the throwaway keys (only if missing), vectors.json and big-1mib.b64.
Entries whose name starts with `fail_` must be refused with the error kind given.
"""

import base64, hashlib, json, os, struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS = {"rsa2048.pem": (2048, serialization.PrivateFormat.TraditionalOpenSSL),
        "rsa4096.pem": (4096, serialization.PrivateFormat.PKCS8),
        "rsa4096-other.pem": (4096, serialization.PrivateFormat.PKCS8)}


def load_or_make(name):
    bits, fmt = KEYS[name]
    if not os.path.exists(name):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        with open(name, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    with open(name, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def seal(public_key, plaintext, label):
    session_key = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label or None)
    rsa_ct = public_key.encrypt(session_key, oaep)
    return struct.pack(">H", len(rsa_ct)) + rsa_ct + AESGCM(session_key).encrypt(b"\0" * 12, plaintext, None)


def label_for(scope, ns, name):
    return {"strict": f"{ns}/{name}", "namespace-wide": ns, "cluster-wide": ""}[scope].encode()


def pattern_1mib():
    # Must match `pattern_1mib` in tests/vectors.rs.
    return bytes((i * 7 + 3) % 256 for i in range(1 << 20))


keys = {name: load_or_make(name) for name in KEYS}
NS, NAME = "payments", "db-credentials"
PLAINTEXTS = {
    "ascii": "s3cr3t-password".encode(),
    "empty": b"",
    "non-ascii": "pässwörd — 秘密 🔑".encode("utf-8"),
}
vectors = []
for key_name in ("rsa2048.pem", "rsa4096.pem"):
    bits = KEYS[key_name][0]
    for scope in ("strict", "namespace-wide", "cluster-wide"):
        for pt_name, pt in PLAINTEXTS.items():
            blob = seal(keys[key_name].public_key(), pt, label_for(scope, NS, NAME))
            vectors.append({
                "name": f"{scope}-{pt_name}-{bits}", "key": key_name, "scope": scope,
                "namespace": NS, "secret_name": NAME, "plaintext_hex": pt.hex(),
                "sealed": base64.b64encode(blob).decode(),
            })

big = pattern_1mib()
with open("big-1mib.b64", "w") as f:
    f.write(base64.b64encode(seal(keys["rsa4096.pem"].public_key(), big, label_for("strict", NS, NAME))).decode())
vectors.append({"name": "strict-1mib-binary-4096", "key": "rsa4096.pem", "scope": "strict",
                "namespace": NS, "secret_name": NAME, "plaintext_pattern": "1mib",
                "plaintext_sha256": hashlib.sha256(big).hexdigest(), "sealed_file": "big-1mib.b64"})

good = seal(keys["rsa4096.pem"].public_key(), b"value", label_for("strict", NS, NAME))
empty_pt = seal(keys["rsa4096.pem"].public_key(), b"", label_for("strict", NS, NAME))
b64 = lambda b: base64.b64encode(b).decode()
flipped = bytearray(good); flipped[-20] ^= 1
failures = [
    ("fail_empty", b64(b""), "MissingLengthPrefix", "rsa4096.pem"),
    ("fail_truncated_length_prefix", b64(good[:1]), "MissingLengthPrefix", "rsa4096.pem"),
    ("fail_truncated_rsa_part", b64(good[:2 + 300]), "TruncatedRsaPart", "rsa4096.pem"),
    ("fail_truncated_at_rsa_end", b64(good[:2 + 512]), "TruncatedTag", "rsa4096.pem"),
    ("fail_truncated_tag", b64(empty_pt[:-1]), "TruncatedTag", "rsa4096.pem"),
    ("fail_truncated_gcm", b64(good[:-1]), "Tampered", "rsa4096.pem"),
    ("fail_length_prefix_larger_than_data", b64(b"\xff\xff" + good[2:]), "TruncatedRsaPart", "rsa4096.pem"),
    ("fail_length_prefix_off_by_one", b64(struct.pack(">H", 511) + good[2:]), "KeySizeMismatch", "rsa4096.pem"),
    ("fail_bad_base64", "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq.....", "Base64", "rsa4096.pem"),
    ("fail_unpadded_base64", b64(good).rstrip("="), "Base64", "rsa4096.pem"),
    ("fail_flipped_gcm_byte", b64(bytes(flipped)), "Tampered", "rsa4096.pem"),
    ("fail_wrong_label", b64(seal(keys["rsa4096.pem"].public_key(), b"v", b"payments/other")), "WrongKeyOrLabel", "rsa4096.pem"),
    ("fail_wrong_key_same_size", b64(seal(keys["rsa4096-other.pem"].public_key(), b"v", label_for("strict", NS, NAME))), "WrongKeyOrLabel", "rsa4096.pem"),
    ("fail_wrong_key_other_size", b64(seal(keys["rsa2048.pem"].public_key(), b"v", label_for("strict", NS, NAME))), "KeySizeMismatch", "rsa4096.pem"),
]
for name, sealed, expect, key_name in failures:
    if sealed.endswith("=") is False and name == "fail_unpadded_base64" and len(sealed) % 4 == 0:
        raise SystemExit("unpadded vector happens to need no padding; rerun")
    vectors.append({"name": name, "key": key_name, "scope": "strict", "namespace": NS,
                    "secret_name": NAME, "sealed": sealed, "expect_error": expect})

with open("vectors.json", "w") as f:
    json.dump({"generator": "Python cryptography " + __import__("cryptography").__version__,
               "vectors": vectors}, f, indent=1)
    f.write("\n")
print(f"wrote {len(vectors)} vectors")
