#!/usr/bin/env python3
"""Verifies Sigil transit signatures with `cryptography`, an implementation independent of the
server's (aws-lc-rs). One JSON object per line on standard input:

    {"type": "ed25519|ecdsa-p256|rsa-2048", "public_key": "<as transit/keys/<name> shows it>",
     "input": "<base64>", "signature": "sigil:v1:<base64>",
     "signature_algorithm": "pss|pkcs1v15", "hash_algorithm": "sha2-256|sha2-384|sha2-512",
     "marshaling_algorithm": "asn1|jws", "message": "<base64, for prehashed: what input digests>",
     "private_key": "<an exported signing-key, checked to match public_key>"}

Each signature must verify, and the same signature over a changed input must not. Prints one
"ok <type>" line per signature; exits 1 at the first failure.
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, utils

HASHES = {"sha2-256": hashes.SHA256, "sha2-384": hashes.SHA384, "sha2-512": hashes.SHA512}


def verify(item, data):
    encoded = item["signature"].split(":", 2)[2]
    if item.get("marshaling_algorithm") == "jws":
        # JWS: base64url without padding, as Vault.
        sig = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    else:
        sig = base64.b64decode(encoded)
    kind = item["type"]
    if kind == "ed25519":
        key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(item["public_key"]))
        key.verify(sig, data)
        return
    key = serialization.load_pem_public_key(item["public_key"].encode())
    h = HASHES[item.get("hash_algorithm", "sha2-256")]()
    if kind == "ecdsa-p256":
        if item.get("marshaling_algorithm") == "jws":
            r = int.from_bytes(sig[:32], "big")
            s = int.from_bytes(sig[32:], "big")
            sig = utils.encode_dss_signature(r, s)
        key.verify(sig, data, ec.ECDSA(h))
        return
    if item.get("signature_algorithm", "pss") == "pss":
        pad = padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.AUTO)
    else:
        pad = padding.PKCS1v15()
    key.verify(sig, data, pad, h)


def public_of_export(item):
    """The public key of an exported signing key, in the form transit/keys/<name> shows."""
    exported = item["private_key"]
    if item["type"] == "ed25519":
        raw = base64.b64decode(exported)
        assert len(raw) == 64, "ed25519 exports are seed and public key"
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert public == raw[32:], "the exported public half is not the seed's"
        return base64.b64encode(public).decode()
    key = serialization.load_pem_private_key(exported.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        if "private_key" in item:
            if public_of_export(item).strip() != item["public_key"].strip():
                print(f"FAIL {item['type']}: the exported key is not the key's")
                sys.exit(1)
            print(f"ok export {item['type']}")
            continue
        # A prehashed signature is checked over the message, so the digest is checked too.
        data = base64.b64decode(item.get("message", item["input"]))
        try:
            verify(item, data)
        except InvalidSignature:
            print(f"FAIL {item['type']}: a valid signature does not verify")
            sys.exit(1)
        try:
            verify(item, data + b"!")
            print(f"FAIL {item['type']}: a signature verifies over another input")
            sys.exit(1)
        except InvalidSignature:
            pass
        print(f"ok {item['type']} {item.get('signature_algorithm', '')} {item.get('marshaling_algorithm', '')}")


if __name__ == "__main__":
    main()
