"""hvac against `sigil agent`'s local API: health, mounts, PKI issue and wraps.

Usage: agent_hvac_sys.py AGENT_URL PKI_ROLE RESPONSE_WRAP_ID BYTES_WRAP_ID UNTRUSTED_WRAP_ID

RESPONSE_WRAP_ID is a KV read the server wrapped to the agent's identity, BYTES_WRAP_ID a
`sigil wrap` of a JSON object by a sender the agent trusts, UNTRUSTED_WRAP_ID one by a sender
it does not. The certificate PKI issues is parsed with `cryptography`. Prints one JSON object
with what it saw; exits non-zero on the first unexpected failure.
"""

import json
import sys

import hvac
import hvac.exceptions
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import serialization


def main() -> None:
    url, role, response_wrap, bytes_wrap, untrusted_wrap = sys.argv[1:6]
    client = hvac.Client(url=url, token="ignored")
    seen = {}

    health = client.sys.read_health_status(method="GET")
    if not isinstance(health, dict):
        sys.exit(f"sys/health answered {health.status_code}: {health.text}")
    seen["health"] = {k: health[k] for k in ("initialized", "sealed", "standby")}
    mounts = client.sys.list_mounted_secrets_engines()
    table = mounts.get("data", mounts)
    seen["mounts"] = sorted(k for k in table if k.endswith("/"))
    seen["secret_type"] = table["secret/"]["type"]

    cert = client.secrets.pki.generate_certificate(name=role, common_name="app.example.com")
    parsed = x509.load_pem_x509_certificate(cert["data"]["certificate"].encode())
    seen["pki_cn"] = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key = serialization.load_pem_private_key(cert["data"]["private_key"].encode(), None)
    seen["pki_key_matches"] = key.public_key().public_numbers() == parsed.public_key().public_numbers()
    seen["pki_serial"] = cert["data"]["serial_number"] != ""

    lookup = client.adapter.post("/v1/sys/wrapping/lookup", json={"token": response_wrap})
    seen["lookup_status"] = lookup["data"]["status"]
    unwrapped = client.sys.unwrap(token=response_wrap)
    seen["unwrapped_kv"] = unwrapped["data"]["data"]
    try:
        client.sys.unwrap(token=response_wrap)
        seen["second_unwrap"] = "read"
    except hvac.exceptions.VaultError as e:
        seen["second_unwrap"] = type(e).__name__
    seen["unwrapped_bytes"] = client.sys.unwrap(token=bytes_wrap)["data"]
    try:
        client.sys.unwrap(token=untrusted_wrap)
        seen["untrusted"] = "read"
    except hvac.exceptions.Forbidden as e:
        seen["untrusted"] = "Forbidden"
        seen["untrusted_message"] = str(e)
    after = client.adapter.post("/v1/sys/wrapping/lookup", json={"token": untrusted_wrap})
    seen["untrusted_still"] = after["data"]["status"]
    try:
        client.sys.wrap(payload={"a": "b"}, ttl=60)
        seen["wrap"] = "made"
    except hvac.exceptions.InvalidRequest as e:
        seen["wrap"] = "InvalidRequest"
        seen["wrap_message"] = str(e)

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
