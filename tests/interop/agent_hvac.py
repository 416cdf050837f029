"""hvac, the Python Vault client, unchanged against `sigil agent`'s local API.

Usage: agent_hvac.py AGENT_URL [DB_ROLE]

Drives KV v2 (create, read, versions, list, delete, undelete, destroy, metadata), transit
encrypt/decrypt, a read that the agent identity's policy denies (hvac raises Forbidden), and —
with DB_ROLE — database credentials with a lease renewal. Any token is accepted and ignored by
the agent. Prints one JSON object with what it saw; exits non-zero on the first failure.
"""

import base64
import json
import sys

import hvac
import hvac.exceptions


def main() -> None:
    url = sys.argv[1]
    db_role = sys.argv[2] if len(sys.argv) > 2 else None
    client = hvac.Client(url=url, token="any-token-is-ignored")
    seen = {}

    seen["authenticated"] = client.is_authenticated()
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path="app/db", secret={"password": "hunter2", "user": "app"})
    kv.create_or_update_secret(path="app/db", secret={"password": "correct horse", "user": "app"})
    latest = kv.read_secret_version(path="app/db", raise_on_deleted_version=True)
    seen["latest"] = latest["data"]["data"]
    seen["latest_version"] = latest["data"]["metadata"]["version"]
    first = kv.read_secret_version(path="app/db", version=1, raise_on_deleted_version=True)
    seen["first"] = first["data"]["data"]["password"]
    kv.create_or_update_secret(path="app/other", secret={"x": "1"})
    seen["list"] = kv.list_secrets(path="app")["data"]["keys"]
    meta = kv.read_secret_metadata(path="app/db")
    seen["metadata_versions"] = sorted(meta["data"]["versions"].keys())

    kv.delete_secret_versions(path="app/db", versions=[1])
    meta = kv.read_secret_metadata(path="app/db")
    seen["v1_deleted"] = meta["data"]["versions"]["1"]["deletion_time"] != ""
    kv.undelete_secret_versions(path="app/db", versions=[1])
    again = kv.read_secret_version(path="app/db", version=1, raise_on_deleted_version=True)
    seen["v1_undeleted"] = again["data"]["data"]["password"]
    kv.destroy_secret_versions(path="app/db", versions=[1])
    meta = kv.read_secret_metadata(path="app/db")
    seen["v1_destroyed"] = meta["data"]["versions"]["1"]["destroyed"]
    kv.delete_latest_version_of_secret(path="app/other")
    try:
        kv.read_secret_version(path="app/other", raise_on_deleted_version=True)
        seen["deleted_read"] = "read"
    except hvac.exceptions.InvalidPath:
        seen["deleted_read"] = "InvalidPath"

    plaintext = base64.b64encode(b"attack at dawn").decode()
    enc = client.secrets.transit.encrypt_data(name="app-key", plaintext=plaintext)
    ciphertext = enc["data"]["ciphertext"]
    seen["ciphertext_prefix"] = ciphertext.split(":")[0] + ":" + ciphertext.split(":")[1]
    dec = client.secrets.transit.decrypt_data(name="app-key", ciphertext=ciphertext)
    seen["decrypted"] = base64.b64decode(dec["data"]["plaintext"]).decode()

    try:
        kv.read_secret_version(path="forbidden/thing", raise_on_deleted_version=True)
        seen["denied"] = "read"
    except hvac.exceptions.Forbidden:
        seen["denied"] = "Forbidden"

    if db_role:
        creds = client.secrets.database.generate_credentials(name=db_role)
        seen["db_username"] = creds["data"]["username"]
        seen["db_lease_duration"] = creds["lease_duration"]
        renewed = client.sys.renew_lease(lease_id=creds["lease_id"], increment=3600)
        seen["db_renewed_lease"] = renewed["lease_id"] == creds["lease_id"]
        seen["db_renewed_duration"] = renewed["lease_duration"]
        client.sys.revoke_lease(lease_id=creds["lease_id"])
        seen["db_revoked"] = True

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
