#!/usr/bin/env python3
"""Differential test of policy decisions: the same policies written to Sigil and to an OpenBao
dev server, the same requests sent by a Sigil identity and an OpenBao token that hold exactly
that policy, and the decisions compared.

    golden_policy.py SIGIL_KEYDIR BAO_ADDR BAO_TOKEN

Sigil is reached as in sigil_interop.py (SIGIL_ADDR, SIGIL_CACERT, SIGIL_SERVER_KEY; the key in
SIGIL_KEYDIR/py.keys is an identity with the `admin` policy). The script makes a second key, the
probe, registers it as an identity, and gives it one policy at a time. On OpenBao each policy
gets a token of its own (`no_default_policy`, so the token holds exactly that policy).

For each policy: the write of the policy must be accepted by both or refused by both. When both
accepted it, the KV fixtures are written again by the admins (so every policy starts from the
same state), and every request is sent as the probe in both. A decision is "denied" (403) or
"allowed" (anything else: 200, 204, 404, a 400 or 409 for a bad check-and-set...); the two
servers must decide alike. Differences listed in ALLOWED are Sigil's deliberate ones
(docs/vault-differences.md); each one seen is printed with its reason.

Exit status: 0 when every decision matches (allowing ALLOWED), 1 otherwise.
"""
import json
import os
import sys
import tempfile

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_kv import Bao, Sigil  # noqa: E402
import sigil_interop  # noqa: E402

PROBE = "golden-policy-probe"

# --- The policies ------------------------------------------------------------------------------
# (name, text). Paths are on the KV v2 mount `secret/` both servers have, and a few sys paths.
POLICIES = [
    ("read-glob", 'path "secret/data/*" { capabilities = ["read"] }'),
    ("exact-deny-beats-glob", '''
        path "secret/data/*" { capabilities = ["read", "create", "update"] }
        path "secret/data/admin" { capabilities = ["deny"] }'''),
    # GHSA-xp3c-3jw3-4vcr: a LIST must not step around a more specific deny.
    ("list-vs-deeper-deny", '''
        path "secret/metadata/*" { capabilities = ["list"] }
        path "secret/metadata/a/*" { capabilities = ["deny"] }'''),
    ("list-plus-vs-deeper-deny", '''
        path "secret/metadata/+" { capabilities = ["list"] }
        path "secret/metadata/+/*" { capabilities = ["deny"] }'''),
    ("list-swapped", '''
        path "secret/metadata/*" { capabilities = ["deny"] }
        path "secret/metadata/a/*" { capabilities = ["list"] }'''),
    ("star-deny-then-list", '''
        path "*" { capabilities = ["deny"] }
        path "secret/metadata/*" { capabilities = ["list"] }'''),
    ("list-exact-folder", 'path "secret/metadata/a/" { capabilities = ["list"] }'),
    ("list-exact-no-slash", 'path "secret/metadata/a" { capabilities = ["list"] }'),
    ("list-plus-folder", 'path "secret/metadata/+/" { capabilities = ["list"] }'),
    ("list-glob-exact-folder-deny", '''
        path "secret/metadata/*" { capabilities = ["list"] }
        path "secret/metadata/a/" { capabilities = ["deny"] }'''),
    ("create-only", 'path "secret/data/app/*" { capabilities = ["create"] }'),
    ("update-only", 'path "secret/data/app/*" { capabilities = ["update"] }'),
    ("patch-and-read", 'path "secret/data/app/*" { capabilities = ["patch", "read"] }'),
    ("delete", '''
        path "secret/data/app/*" { capabilities = ["delete"] }
        path "secret/metadata/app/*" { capabilities = ["delete"] }'''),
    ("metadata", 'path "secret/metadata/app/*" { capabilities = ["read", "update", "list"] }'),
    ("versions", '''
        path "secret/subkeys/*" { capabilities = ["read"] }
        path "secret/destroy/*" { capabilities = ["update"] }
        path "secret/undelete/*" { capabilities = ["update"] }'''),
    ("plus-beats-shorter-glob", '''
        path "secret/data/+/config" { capabilities = ["read"] }
        path "secret/data/team/*" { capabilities = ["deny"] }'''),
    ("later-glob-beats-plus", '''
        path "secret/data/team/+/config" { capabilities = ["deny"] }
        path "secret/data/team/x/*" { capabilities = ["read"] }'''),
    ("longer-glob-wins", '''
        path "secret/data/*" { capabilities = ["read"] }
        path "secret/data/team/*" { capabilities = ["deny"] }'''),
    ("same-path-twice-deny-wins", '''
        path "secret/data/app/existing" { capabilities = ["read"] }
        path "secret/data/app/existing" { capabilities = ["deny"] }'''),
    ("many-plus", '''
        path "secret/data/+/+/+/+" { capabilities = ["read"] }
        path "secret/data/+/+" { capabilities = ["read"] }'''),
    ("legacy-read", 'path "secret/*" { policy = "read" }'),
    ("legacy-write", 'path "secret/*" { policy = "write" }'),
    ("legacy-sudo-sys", 'path "sys/*" { policy = "sudo" }'),
    ("legacy-and-caps-one-line", 'path "secret/data/*" { policy = "read" capabilities = ["update"] }'),
    ("comma-separated", 'path "secret/data/app/*" { capabilities = ["create", "update"], policy = "read" }'),
    ("comments", '# a\n// b\n/* c */ path "secret/data/a/b" { capabilities = ["read"] }'),
    ("json", json.dumps({"path": {
        "secret/data/*": {"capabilities": ["read", "list"]},
        "secret/metadata/*": {"capabilities": ["list"]},
        "secret/data/admin": {"capabilities": ["deny"]},
    }})),
    ("json-list-form", json.dumps({"path": [
        {"secret/data/a/*": {"capabilities": ["read"]}},
        {"secret/metadata/a/*": {"capabilities": ["list"]}},
    ]})),
    ("sys", '''
        path "sys/mounts" { capabilities = ["read"] }
        path "sys/policies/acl" { capabilities = ["list"] }
        path "sys/policies/acl/*" { capabilities = ["read"] }'''),
    ("root-glob-read-list", 'path "*" { capabilities = ["read", "list"] }'),
    ("config", '''
        path "secret/config" { capabilities = ["deny"] }
        path "secret/*" { capabilities = ["read", "update"] }'''),
    ("policy-with-trailing-slash", 'path "secret/data/admin/" { capabilities = ["read", "update", "create"] }'),
    # Refused by both.
    ("plus-star", 'path "secret/data/+*" { capabilities = ["read"] }'),
    ("unknown-capability", 'path "secret/data/*" { capabilities = ["raed"] }'),
    # Refused by Sigil only (docs/vault-differences.md).
    ("star-in-the-middle", 'path "secret/*/admin" { capabilities = ["read"] }'),
    ("no-capabilities", 'path "secret/data/x" { }'),
]

# --- The requests ------------------------------------------------------------------------------
# (name, method, path, payload); `{policy}` in a path is replaced by the policy's name, so a
# create always creates.
REQUESTS = [
    ("read", "GET", "secret/data/app/existing", None),
    ("read-missing", "GET", "secret/data/app/missing", None),
    ("update", "POST", "secret/data/app/existing", {"data": {"v": "2"}}),
    ("create", "POST", "secret/data/app/new-{policy}", {"data": {"v": "1"}}),
    ("cas-mismatch", "POST", "secret/data/app/existing", {"options": {"cas": 999}, "data": {"v": "3"}}),
    ("patch", "PATCH", "secret/data/app/existing", {"data": {"p": "1"}}),
    ("delete-latest", "DELETE", "secret/data/app/existing", None),
    ("delete-metadata", "DELETE", "secret/metadata/app/victim", None),
    ("read-metadata", "GET", "secret/metadata/app/existing", None),
    ("write-metadata", "POST", "secret/metadata/app/existing", {"max_versions": 7}),
    ("subkeys", "GET", "secret/subkeys/app/existing", None),
    ("destroy", "POST", "secret/destroy/app/existing", {"versions": [1]}),
    ("undelete", "POST", "secret/undelete/app/existing", {"versions": [1]}),
    ("list-root", "LIST", "secret/metadata/", None),
    ("list-app", "LIST", "secret/metadata/app", None),
    ("list-a", "LIST", "secret/metadata/a", None),
    ("list-a-slash", "LIST", "secret/metadata/a/", None),
    ("list-team", "LIST", "secret/metadata/team", None),
    ("list-team-x", "LIST", "secret/metadata/team/x", None),
    ("read-a-b", "GET", "secret/data/a/b", None),
    ("read-admin", "GET", "secret/data/admin", None),
    ("read-admin-slash", "GET", "secret/data/admin/", None),
    ("write-admin-slash", "POST", "secret/data/admin/", {"data": {"v": "x"}}),
    ("read-team-ops", "GET", "secret/data/team/ops", None),
    ("read-team-x-config", "GET", "secret/data/team/x/config", None),
    ("read-team", "GET", "secret/data/team", None),
    ("read-deep", "GET", "secret/data/deep/x/y/z", None),
    ("read-config", "GET", "secret/config", None),
    ("write-config", "POST", "secret/config", {"max_versions": 0, "cas_required": False}),
    ("read-mounts", "GET", "sys/mounts", None),
    ("list-policies", "LIST", "sys/policies/acl", None),
    ("read-policy", "GET", "sys/policies/acl/golden-p-read-glob", None),
]

# What every policy starts from: written by the admins before each policy's requests.
FIXTURES = [
    "secret/data/app/existing",
    "secret/data/app/victim",
    "secret/data/a/b",
    "secret/data/admin",
    "secret/data/team/ops",
    "secret/data/team/x/config",
    "secret/data/deep/x/y/z",
]


# --- Deliberate differences --------------------------------------------------------------------
class Allowed:
    def __init__(self, policies, steps, reason):
        self.policies, self.steps, self.reason = policies, steps, reason

    def covers(self, policy, step):
        return (self.policies is None or policy in self.policies) and step in self.steps


TRAILING_SLASH = (
    "Sigil drops a trailing '/' from every request but a LIST before the policy check "
    "(docs/vault-differences.md); OpenBao checks 'secret/data/admin/' as a path of its own"
)
ALLOWED = [
    Allowed(None, ("read-admin-slash", "write-admin-slash"), TRAILING_SLASH),
    Allowed(("star-in-the-middle",), ("write-policy",),
            "Sigil refuses '*' anywhere but at the end; OpenBao reads it as a literal character"),
    Allowed(("no-capabilities",), ("write-policy",),
            "Sigil refuses a path block without capabilities; OpenBao accepts one that grants nothing"),
]


def decision(status):
    return "denied" if status == 403 else "allowed"


def main(argv):
    keydir, bao_addr, bao_token = argv
    admin_sigil = Sigil(keydir)
    admin_bao = Bao(bao_addr, bao_token)

    # The probe: a key of its own, registered with no policy yet.
    probe_dir = os.path.join(tempfile.mkdtemp(prefix="golden-policy-"), "probe")
    os.mkdir(probe_dir)
    real_stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        sigil_interop.keygen(probe_dir)
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    probe_client = sigil_interop.Client(probe_dir)
    public = sigil_interop.bech32_encode(
        "sigil",
        sigil_interop.raw_public(probe_client.sign_key.public_key())
        + sigil_interop.raw_public(probe_client.enc_key.public_key()),
    )
    r = admin_sigil.call("POST", f"identity/entity/name/{PROBE}", {"public_key": public, "policies": []})
    assert r.status in (200, 204), (r.status, r.body)
    probe_sigil = Sigil.__new__(Sigil)
    probe_sigil.client = probe_client

    compared = differ = allowed_seen = 0
    for name, text in POLICIES:
        policy = f"golden-p-{name}"
        s = admin_sigil.call("PUT", f"sys/policies/acl/{policy}", {"policy": text})
        b = admin_bao.call("PUT", f"sys/policies/acl/{policy}", {"policy": text})
        s_ok, b_ok = s.status in (200, 204), b.status in (200, 204)
        compared += 1
        if s_ok != b_ok:
            rule = next((a for a in ALLOWED if a.covers(name, "write-policy")), None)
            verdict = f"sigil {s.status}, bao {b.status}"
            if rule:
                allowed_seen += 1
                print(f"[ok* ] {name}: write-policy: {verdict} ({rule.reason})")
            else:
                differ += 1
                print(f"[DIFF] {name}: write-policy: {verdict}\n       sigil: {s.body}\n       bao: {b.body}")
            continue
        if not s_ok:
            print(f"[ok  ] {name}: refused by both (sigil {s.status}, bao {b.status})")
            continue

        # Both hold the policy: the fixtures, the probe's policy, an OpenBao token.
        for path in FIXTURES:
            for server in (admin_sigil, admin_bao):
                r = server.call("POST", path, {"data": {"fixture": "1"}})
                assert r.status == 200, (server.name, path, r.status, r.body)
        r = admin_sigil.call("POST", f"identity/entity/name/{PROBE}", {"policies": [policy]})
        assert r.status in (200, 204), (r.status, r.body)
        r = admin_bao.call("POST", "auth/token/create",
                           {"policies": [policy], "no_default_policy": True, "ttl": "10m"})
        assert r.status == 200, (r.status, r.body)
        probe_bao = Bao(bao_addr, r.body["auth"]["client_token"])

        line = []
        for step, method, path, payload in REQUESTS:
            path = path.replace("{policy}", name)
            s = probe_sigil.call(method, path, payload)
            b = probe_bao.call(method, path, payload)
            compared += 1
            ds, db = decision(s.status), decision(b.status)
            if ds == db:
                line.append(f"{step}={'D' if ds == 'denied' else 'A'}")
                continue
            rule = next((a for a in ALLOWED if a.covers(name, step)), None)
            verdict = f"{method} {path}: sigil {s.status} ({ds}), bao {b.status} ({db})"
            if rule:
                allowed_seen += 1
                print(f"[ok* ] {name}: {step}: {verdict} ({rule.reason})")
            else:
                differ += 1
                print(f"[DIFF] {name}: {step}: {verdict}\n       sigil: {s.body}\n       bao: {b.body}")
        print(f"[{'ok' if not differ else '..':4}] {name}: {' '.join(line)}")

    print()
    print(f"golden policy: {compared} decisions compared over {len(POLICIES)} policies and "
          f"{len(REQUESTS)} requests, {differ} differ ({allowed_seen} allowed differences)")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
