#!/usr/bin/env python3
"""An independent Sigil client: RFC 9421 via `http-message-signatures`, RFC 9180 via `pyhpke`,
keys via `cryptography`. It shares no code with the Rust implementation.

    sigil_interop.py keygen DIR          -> writes DIR/py.keys, prints the sigil1... identity
    sigil_interop.py run DIR             -> uses SIGIL_ADDR, SIGIL_CACERT, SIGIL_SERVER_KEY:
                                            writes a secret, reads it back, checks refusals
"""
import base64
import datetime
import hashlib
import json
import os
import secrets
import sys

import nacl.bindings as nacl_aead
import nacl.exceptions
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

# --- Bech32 (BIP 173), written from the specification -------------------------------------
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    return chk


def _hrp_expand(hrp):
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _convertbits(data, frombits, tobits, pad):
    acc, bits, out = 0, 0, []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (tobits - bits)) & maxv)
    elif not pad and (bits >= frombits or ((acc << (tobits - bits)) & maxv)):
        raise ValueError("invalid padding")
    return out


def bech32_encode(hrp, data: bytes) -> str:
    d5 = _convertbits(data, 8, 5, True)
    poly = _polymod(_hrp_expand(hrp) + d5 + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in d5 + checksum)


def bech32_decode(s: str):
    s = s.lower()
    pos = s.rfind("1")
    hrp, data = s[:pos], [CHARSET.index(c) for c in s[pos + 1 :]]
    if _polymod(_hrp_expand(hrp) + data) != 1:
        raise ValueError("bad bech32 checksum")
    return hrp, bytes(_convertbits(data[:-6], 5, 8, False))


# --- Sigil's formats (PROTOCOL.md) -----------------------------------------------------------
def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def raw_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keyid(sign_pub: ed25519.Ed25519PublicKey) -> str:
    der = sign_pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(der).digest())


SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


def seal(sender: x25519.X25519PrivateKey, recipient: bytes, info: bytes, aad: bytes, pt: bytes) -> bytes:
    pkr = KEMKey.from_pyca_cryptography_key(x25519.X25519PublicKey.from_public_bytes(recipient))
    sks = KEMKey.from_pyca_cryptography_key(sender)
    enc, ctx = SUITE.create_sender_context(pkr, info=info, sks=sks)
    ct = ctx.seal(pt, aad=aad)
    return json.dumps({"enc": b64url(enc), "ct": b64url(ct)}).encode()


def open_sealed(recipient: x25519.X25519PrivateKey, sender: bytes, info: bytes, aad: bytes, body: bytes,
                export: bool = False):
    """Opens an HPKE envelope; with export, also returns the channel's two keys (docs/protocol.md):
    (Export("sigil/v1/channel/request", 32), Export("sigil/v1/channel/response", 32))."""
    env = json.loads(body)
    skr = KEMKey.from_pyca_cryptography_key(recipient)
    pks = KEMKey.from_pyca_cryptography_key(x25519.X25519PublicKey.from_public_bytes(sender))
    ctx = SUITE.create_recipient_context(b64url_decode(env["enc"]), skr, info=info, pks=pks)
    pt = ctx.open(b64url_decode(env["ct"]), aad=aad)
    if export:
        return pt, (ctx.export(b"sigil/v1/channel/request", 32), ctx.export(b"sigil/v1/channel/response", 32))
    return pt


def response_aad(status: int, nonce: str) -> bytes:
    """An answer's associated data: its status and the request's nonce."""
    return f"{status} {nonce}".encode()


def channel_seal(key: bytes, channel: str, aad: bytes, pt: bytes) -> bytes:
    """Channels (docs/protocol.md) with libsodium's XChaCha20-Poly1305 (PyNaCl), independent of
    RustCrypto."""
    n = secrets.token_bytes(24)
    ct = nacl_aead.crypto_aead_xchacha20poly1305_ietf_encrypt(pt, aad, n, key)
    return json.dumps({"ch": channel, "n": b64url(n), "ct": b64url(ct)}).encode()


def channel_open(key: bytes, aad: bytes, body: bytes) -> bytes:
    env = json.loads(body)
    return nacl_aead.crypto_aead_xchacha20poly1305_ietf_decrypt(
        b64url_decode(env["ct"]), aad, b64url_decode(env["n"]), key
    )


class Client:
    def __init__(self, keydir):
        keys = json.load(open(os.path.join(keydir, "py.keys")))
        self.sign_key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["ed25519"]))
        self.enc_key = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["x25519"]))
        self.keyid = keyid(self.sign_key.public_key())
        self.addr = os.environ["SIGIL_ADDR"]
        self.session = requests.Session()
        # Trust exactly the server's CA: without this, REQUESTS_CA_BUNDLE would override it.
        self.session.trust_env = False
        self.session.verify = os.environ["SIGIL_CACERT"]
        self.signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={self.keyid: self.sign_key}),
        )
        server = self.session.get(self.addr + "/v1/sys/server-key").json()
        hrp, raw = bech32_decode(server["public_key"])
        assert hrp == "sigil" and len(raw) == 64
        sign_pub = ed25519.Ed25519PublicKey.from_public_bytes(raw[:32])
        pinned = os.environ["SIGIL_SERVER_KEY"]
        if keyid(sign_pub) != pinned:
            raise SystemExit(f"server key mismatch: {keyid(sign_pub)} != {pinned}")
        self.server_enc = raw[32:]
        self.server_sign = sign_pub
        self.receipts = 0

    def call(self, method, path, payload=None, channel=None, channel_key=None):
        """One signed request. channel: None, "new" (ask for one) or an id (with channel_key, the
        pair of keys). Returns the response and the opened body (None without one; a 2xx without
        a body must carry a receipt that opens, counted in self.receipts); after "new", also
        self.channel = (id, keys)."""
        nonce = b64url(secrets.token_bytes(18))
        body = None
        headers = {}
        if channel is not None:
            headers["Sigil-Channel"] = channel
        if payload is not None:
            plain = json.dumps(payload).encode()
            if channel_key is not None:
                body = channel_seal(channel_key[0], channel, nonce.encode(), plain)
            else:
                body = seal(self.enc_key, self.server_enc, b"sigil/v1/request", nonce.encode(), plain)
            headers["Content-Type"] = "application/vnd.sigil.sealed+json"
        req = requests.Request(method, self.addr + "/v1/" + path, data=body, headers=headers).prepare()
        now = datetime.datetime.now(datetime.timezone.utc)
        components = ("@method", "@target-uri") + (("content-digest",) if body is not None else ())
        self.signer.sign(
            req,
            key_id=self.keyid,
            created=now,
            expires=now + datetime.timedelta(seconds=60),
            nonce=nonce,
            label="sig1",
            tag="sigil-request",
            include_alg=True,
            covered_component_ids=components,
            body=body,
        )
        resp = self.session.send(req)
        self.last_nonce = nonce
        opened = None
        aad = response_aad(resp.status_code, nonce)
        if 200 <= resp.status_code < 300 and not resp.content:
            # No body: the server's receipt proves it sent this status for this request.
            receipt = resp.headers["Sigil-Receipt"].encode()
            if "ch" in json.loads(receipt):
                plain = channel_open(channel_key[1], aad, receipt)
            else:
                plain = open_sealed(self.enc_key, self.server_enc, b"sigil/v1/response", aad, receipt)
            assert plain == b"", plain
            self.receipts += 1
        elif 200 <= resp.status_code < 300:
            assert resp.headers["Content-Type"] == "application/vnd.sigil.sealed+json", resp.headers
            envelope = json.loads(resp.content)
            if "ch" in envelope:
                assert envelope["ch"] == channel, envelope
                opened = json.loads(channel_open(channel_key[1], aad, resp.content))
            elif channel == "new":
                pt, keys = open_sealed(self.enc_key, self.server_enc, b"sigil/v1/response", aad,
                                       resp.content, export=True)
                grant = resp.headers["Sigil-Channel"]
                cid, ttl = grant.split(";")
                assert ttl.strip().startswith("ttl="), grant
                self.channel = (cid.strip(), keys)
                opened = json.loads(pt)
            else:
                opened = json.loads(open_sealed(self.enc_key, self.server_enc, b"sigil/v1/response", aad, resp.content))
        return resp, opened


def open_stream(c, status, nonce, body):
    """Opens a sealed stream (docs/protocol.md §4.7) with one pyhpke recipient context: enc,
    then frames of last byte, u32 length, ciphertext; frame i is the context's message i with
    associated data "<status> <nonce>" and the last byte."""
    skr = KEMKey.from_pyca_cryptography_key(c.enc_key)
    pks = KEMKey.from_pyca_cryptography_key(x25519.X25519PublicKey.from_public_bytes(c.server_enc))
    ctx = SUITE.create_recipient_context(body[:32], skr, info=b"sigil/v1/response-stream", pks=pks)
    at, out, last = 32, b"", 0
    while not last:
        last, n = body[at], int.from_bytes(body[at + 1:at + 5], "big")
        assert last in (0, 1) and n <= 65536 + 16, (last, n)
        out += ctx.open(body[at + 5:at + 5 + n], aad=response_aad(status, nonce) + bytes([last]))
        at += 5 + n
    assert at == len(body), "bytes after the last frame"
    return out


def backup(c, path="sys/storage/snapshot", want_snapshot=False):
    """An operator backup streamed, opened here, and the snapshot in it checked: its header
    signed by the pinned server key, its entries' length and SHA-256 as the header says."""
    nonce = b64url(secrets.token_bytes(18))
    req = requests.Request("GET", c.addr + "/v1/" + path,
                           headers={"Accept": "application/vnd.sigil.sealed-stream"}).prepare()
    now = datetime.datetime.now(datetime.timezone.utc)
    c.signer.sign(
        req, key_id=c.keyid, created=now, expires=now + datetime.timedelta(seconds=60),
        nonce=nonce, label="sig1", tag="sigil-request", include_alg=True,
        covered_component_ids=("@method", "@target-uri"),
    )
    resp = c.session.send(req)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "application/vnd.sigil.sealed-stream", resp.headers
    body = resp.content
    assert int(resp.headers["Content-Length"]) == len(body)
    snapshot = open_stream(c, 200, nonce, body)
    magic = b"SIGIL-SNAPSHOT-1\n"
    assert snapshot.startswith(magic), snapshot[:40]
    line, entries = snapshot[len(magic):].split(b"\n", 1)
    header = json.loads(line)
    assert len(entries) == header["body_bytes"] and header["entries"] > 0, header
    assert hashlib.sha256(entries).hexdigest() == header["body_sha256"], header
    hrp, raw = bech32_decode(header["server_key"])
    assert keyid(ed25519.Ed25519PublicKey.from_public_bytes(raw[:32])) == os.environ["SIGIL_SERVER_KEY"]
    # A frame marked last that is not: its associated data changes, and it does not open.
    tampered = bytearray(body)
    tampered[32] ^= 1
    try:
        open_stream(c, 200, nonce, bytes(tampered))
        raise AssertionError("a frame with its last byte changed opened")
    except AssertionError:
        raise
    except Exception:
        pass
    # Another status (as a proxy rewriting 200 to 201 would make it): does not open.
    try:
        open_stream(c, 201, nonce, body)
        raise AssertionError("a stream opened for another status")
    except AssertionError:
        raise
    except Exception:
        pass
    if want_snapshot:
        return header, snapshot
    return header["entries"]


def seal_stream(c, nonce, plain, mark_last=True):
    """A request body as a sealed stream (docs/protocol.md §4.7), with one pyhpke sender
    context: enc, then frames of at most 64 KiB of plaintext, frame i the context's message i
    with associated data the nonce and the frame's last byte. With mark_last=False no frame says
    it is the last (a stream cut short)."""
    pkr = KEMKey.from_pyca_cryptography_key(x25519.X25519PublicKey.from_public_bytes(c.server_enc))
    sks = KEMKey.from_pyca_cryptography_key(c.enc_key)
    enc, ctx = SUITE.create_sender_context(pkr, info=b"sigil/v1/request-stream", sks=sks)
    chunks = [plain[i:i + 65536] for i in range(0, len(plain), 65536)] or [b""]
    out = bytearray(enc)
    for i, chunk in enumerate(chunks):
        last = 1 if mark_last and i == len(chunks) - 1 else 0
        ct = ctx.seal(chunk, aad=nonce.encode() + bytes([last]))
        out += bytes([last]) + len(ct).to_bytes(4, "big") + ct
    return bytes(out)


def upload(c, path, body, nonce, tamper=False, signed_digest_of=None):
    """POST path with a sealed-stream body, signed over its content-digest; with tamper, one
    byte of the body is changed after signing; with signed_digest_of, the content-digest signed
    is that of other bytes."""
    req = requests.Request("POST", c.addr + "/v1/" + path, data=body,
                           headers={"Content-Type": "application/vnd.sigil.sealed-stream"}).prepare()
    now = datetime.datetime.now(datetime.timezone.utc)
    c.signer.sign(
        req, key_id=c.keyid, created=now, expires=now + datetime.timedelta(seconds=60),
        nonce=nonce, label="sig1", tag="sigil-request", include_alg=True,
        covered_component_ids=("@method", "@target-uri", "content-digest"),
        body=body if signed_digest_of is None else signed_digest_of,
    )
    if signed_digest_of is not None:
        req.body = body
    if tamper:
        changed = bytearray(body)
        changed[-1] ^= 1
        req.body = bytes(changed)
    return c.session.send(req)


def restore(keydir):
    """A cluster's snapshot streamed down, then streamed back up, sealed here with pyhpke, to be
    staged for a restore; a body changed after signing and a stream without its last frame are
    refused, and stage nothing."""
    c = Client(keydir)
    header, snapshot = backup(c, "sys/storage/raft/snapshot", want_snapshot=True)
    assert len(snapshot) > 65536, "the snapshot spans several frames"
    path = "sys/storage/raft/snapshot"
    nonce = b64url(secrets.token_bytes(18))
    resp = upload(c, path, seal_stream(c, nonce, snapshot), nonce, tamper=True)
    # The frame it is in no longer opens (before the signed digest is even compared).
    assert resp.status_code == 400 and "opened" in resp.text, (resp.status_code, resp.text)
    # Whole and opening, but not the body whose digest was signed: refused once it has come.
    nonce = b64url(secrets.token_bytes(18))
    resp = upload(c, path, seal_stream(c, nonce, snapshot), nonce, signed_digest_of=b"other")
    assert resp.status_code == 401 and "digest" in resp.text, (resp.status_code, resp.text)
    nonce = b64url(secrets.token_bytes(18))
    resp = upload(c, path, seal_stream(c, nonce, snapshot, mark_last=False), nonce)
    assert resp.status_code == 400 and "cut short" in resp.text, (resp.status_code, resp.text)
    nonce = b64url(secrets.token_bytes(18))
    resp = upload(c, path, seal_stream(c, nonce, snapshot), nonce)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "application/vnd.sigil.sealed+json", resp.headers
    status = json.loads(open_sealed(c.enc_key, c.server_enc, b"sigil/v1/response",
                                    response_aad(200, nonce), resp.content))["data"]
    assert status["staged"] and status["entries"] == header["entries"], status
    assert status["created"] == header["created"], status
    print("restore staged: " + status["digest"])


def keygen(keydir):
    sign_key = ed25519.Ed25519PrivateKey.generate()
    enc_key = x25519.X25519PrivateKey.generate()
    path = os.path.join(keydir, "py.keys")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "ed25519": sign_key.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                ).hex(),
                "x25519": enc_key.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                ).hex(),
            },
            f,
        )
    print(bech32_encode("sigil", raw_public(sign_key.public_key()) + raw_public(enc_key.public_key())))


def run(keydir):
    c = Client(keydir)
    secret = "written-by-python-" + secrets.token_hex(4)
    resp, opened = c.call("POST", "secret/data/py/app", {"data": {"token": secret}})
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert opened["data"]["version"] == 1, opened
    resp, opened = c.call("GET", "secret/data/py/app")
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert secret.encode() not in resp.content, "response body must be sealed"
    assert opened["data"]["data"]["token"] == secret, opened
    # A secret written by the Rust CLI reads back here too.
    resp, opened = c.call("GET", "secret/data/from-rust")
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert opened["data"]["data"]["greeting"] == "hello-python", opened
    resp, opened = c.call("LIST", "secret/metadata/py")
    assert opened["data"]["keys"] == ["app"], opened
    # Outside its policy: 403, plain JSON error.
    resp, opened = c.call("GET", "sys/policies/acl/admin")
    assert resp.status_code == 403, (resp.status_code, resp.text)
    assert resp.json() == {"errors": ["permission denied"]}
    # A replay of a signed request is refused.
    nonce_req = requests.Request("GET", c.addr + "/v1/secret/data/py/app").prepare()
    now = datetime.datetime.now(datetime.timezone.utc)
    c.signer.sign(
        nonce_req, key_id=c.keyid, created=now, expires=now + datetime.timedelta(seconds=60),
        nonce=b64url(secrets.token_bytes(18)), label="sig1", tag="sigil-request",
        covered_component_ids=("@method", "@target-uri"),
    )
    assert c.session.send(nonce_req).status_code == 200
    assert c.session.send(nonce_req).status_code == 401
    # Channels (PROTOCOL.md §6): the key exported from an HPKE response seals later bodies and
    # answers with XChaCha20-Poly1305 (libsodium here).
    resp, opened = c.call("GET", "secret/data/py/app", channel="new")
    assert resp.status_code == 200 and opened["data"]["data"]["token"] == secret, resp.text
    cid, key = c.channel
    resp, opened = c.call("POST", "secret/data/py/chan", {"data": {"via": "channel"}}, channel=cid, channel_key=key)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert "ch" in json.loads(resp.content), "answered on the channel"
    resp, opened = c.call("GET", "secret/data/py/chan", channel=cid, channel_key=key)
    assert opened["data"]["data"]["via"] == "channel", opened
    # The answer's key is not the request's: a request body sent back as its answer does not open.
    body = channel_seal(key[0], cid, b"200 x", b"{}")
    try:
        channel_open(key[1], b"200 x", body)
        raise AssertionError("a request body opened as an answer")
    except nacl.exceptions.CryptoError:
        pass
    # A bodiless 2xx carries a receipt (opened and checked in call()).
    resp, _ = c.call("DELETE", "secret/data/py/chan2", channel=cid, channel_key=key)
    assert resp.status_code == 204 and c.receipts == 1, (resp.status_code, resp.text)
    resp, _ = c.call("DELETE", "secret/data/py/chan3")
    assert resp.status_code == 204 and c.receipts == 2, (resp.status_code, resp.text)
    # A body sealed to a channel the server does not hold: refused, nothing written, and the
    # answer that says so is signed by the server (Ed25519, verified with pyca/cryptography).
    resp, _ = c.call("POST", "secret/data/py/chan", {"data": {"via": "ghost"}}, channel="nope", channel_key=key)
    word, sig = resp.headers["Sigil-Channel"].split(";")
    assert resp.status_code == 400 and word == "expired", resp.text
    c.server_sign.verify(b64url_decode(sig.strip().removeprefix("sig=")),
                         ("sigil/v1/channel-expired " + c.last_nonce).encode())
    resp, opened = c.call("GET", "secret/data/py/chan", channel="nope")
    assert "enc" in json.loads(resp.content), "an unknown channel falls back to HPKE"
    assert opened["data"]["data"]["via"] == "channel", opened
    entries = backup(c)
    print(f"interop ok: {secret} (backup of {entries} entries streamed)", file=sys.stderr)
    print("interop ok: " + secret)


if __name__ == "__main__":
    cmd, keydir = sys.argv[1], sys.argv[2]
    {"keygen": keygen, "run": run, "restore": restore}[cmd](keydir)
