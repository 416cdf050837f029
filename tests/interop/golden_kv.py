#!/usr/bin/env python3
"""Golden compatibility test: one KV v2 sequence against Sigil and against an OpenBao (dev
server), compared step by step.

    golden_kv.py SIGIL_KEYDIR BAO_ADDR BAO_TOKEN [--record FILE]

Sigil is reached as in sigil_interop.py (SIGIL_ADDR, SIGIL_CACERT, SIGIL_SERVER_KEY; the key in
SIGIL_KEYDIR/py.keys must be an identity with the `admin` policy). OpenBao is reached over plain
HTTP with `X-Vault-Token`.

For every step the HTTP status and the JSON body are compared: Sigil's opened (unsealed) body
against OpenBao's body. Before comparing, the response envelope's per-request members
(request_id, lease_id, lease_duration, renewable, wrap_info, warnings, auth, mount_type) are
set aside, and every RFC 3339 timestamp becomes "<time>" ("" stays ""). Everything else must be
equal, except the differences listed in ALLOWED with their reason. Not compared, but printed as
notes: OpenBao's warnings, which timestamps of one response are equal in one server and not in
the other, and (summed up at the end) differences in the envelope members set aside.

Exit status: 0 when every step matches (allowing ALLOWED), 1 otherwise, 2 on a usage error.
"""
import json
import os
import re
import secrets
import sys

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sigil_interop import Client  # noqa: E402

# Members of Vault's response envelope that differ per request or per server build.
ENVELOPE = (
    "request_id",
    "lease_id",
    "lease_duration",
    "renewable",
    "wrap_info",
    "warnings",
    "auth",
    "mount_type",
)
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# --- Known, deliberate divergences ------------------------------------------------------------
class Allowed:
    """A difference that is accepted: at `field` ("status" or a JSON path such as
    `data.metadata`), in the named steps, Sigil answers `sigil` where OpenBao answers `bao`."""

    def __init__(self, steps, field, sigil, bao, reason):
        self.steps, self.field, self.sigil, self.bao, self.reason = steps, field, sigil, bao, reason

    def covers(self, step, field, sigil, bao):
        return step in self.steps and field == self.field and sigil == self.sigil and bao == self.bao


class AllowedError:
    """In the named steps Sigil answers with an error body of its own (`{"errors": [...]}`)
    where OpenBao's body differs; the status must be equal, or the pair given. The difference
    is accepted only when both bodies have the documented shape: `sigil` and `bao` are checks
    of the whole (normalized) bodies."""

    def __init__(self, steps, reason, sigil, bao, status=None):
        self.steps, self.reason, self.status = steps, reason, status
        self.sigil_shape, self.bao_shape = sigil, bao

    def covers(self, step, field, sigil, bao):
        if step not in self.steps:
            return False
        if field == "status":
            return (sigil, bao) == self.status
        return True

    def shapes_hold(self, sigil_body, bao_body):
        return bool(self.sigil_shape(sigil_body)) and bool(self.bao_shape(bao_body))


def errors(*needles):
    """A Vault error body: exactly `{"errors": [...]}`, one message per needle, each message
    containing its needle (no needle: an empty list)."""

    def check(body):
        if not isinstance(body, dict) or set(body) != {"errors"} or not isinstance(body["errors"], list):
            return False
        return len(body["errors"]) == len(needles) and all(n in m for n, m in zip(needles, body["errors"]))

    return check


def version_metadata(data):
    """A version's metadata, as OpenBao puts it in the body of a 404."""
    return isinstance(data, dict) and isinstance(data.get("version"), int) and "deletion_time" in data


def bao_deleted_version_body(body):
    """OpenBao's 404 for a deleted or destroyed version: the version's metadata under `data`
    (`data.metadata` for a read and for subkeys, `data` itself for a patch), no secret."""
    if not isinstance(body, dict) or set(body) != {"data"} or not isinstance(body["data"], dict):
        return False
    data = body["data"]
    if "metadata" in data:
        return version_metadata(data["metadata"]) and data.get("data") is None and data.get("subkeys") is None
    return version_metadata(data)


CAS_STEPS = ("write-wrong-cas", "write-cas0-on-existing", "patch-wrong-cas")
DELETED_VERSION_STEPS = (
    "read-deleted-latest",
    "subkeys-deleted-latest",
    "patch-deleted-latest",
    "read-deleted-version-1",
    "read-destroyed-version-1",
    "read-destroyed-after-undelete",
)
ALLOWED = [
    AllowedError(
        DELETED_VERSION_STEPS,
        "Sigil never seals an error, so its 404 for a deleted or destroyed version is the plain "
        '{"errors":[]}; OpenBao puts the version metadata in its 404 body. The same metadata is '
        "readable (sealed) at metadata/<path>.",
        sigil=errors(),
        bao=bao_deleted_version_body,
    ),
    AllowedError(
        ("write-unknown-field",),
        "Sigil refuses unknown fields in a write (400) instead of ignoring them with a warning: a "
        'mistyped "option" would otherwise silently drop the check-and-set.',
        sigil=errors("invalid request body"),
        bao=lambda b: isinstance(b, dict) and version_metadata(b.get("data")),
        status=(400, 200),
    ),
    AllowedError(
        ("config-patch",),
        "Same status and message; OpenBao wraps it in Go's multierror text.",
        sigil=errors("unsupported operation"),
        bao=errors("* unsupported operation"),
    ),
    AllowedError(
        ("patch-missing", "metadata-patch-missing"),
        "Same status; OpenBao sends no body for a PATCH of a missing path, Sigil an empty error list.",
        sigil=errors(),
        bao=lambda b: b is None,
    ),
    AllowedError(
        ("kv-v1-style-path",),
        "Same status; Sigil says there is no such route, OpenBao answers {\"data\": null} (and a "
        "warning in the envelope that the path is a KV v2 mount's).",
        sigil=errors("no handler for route"),
        bao=lambda b: b == {"data": None},
    ),
    Allowed(
        CAS_STEPS,
        "status",
        409,
        400,
        "A check-and-set mismatch is a conflict: Sigil answers 409 Conflict where Vault and "
        "OpenBao answer 400 (logical.ErrInvalidRequest); the error message is the same.",
    ),
]


# --- The two servers --------------------------------------------------------------------------
class Reply:
    def __init__(self, status, body, raw):
        self.status, self.body, self.raw = status, body, raw


def _json_or_text(resp):
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return {"<not JSON>": resp.text}


class Sigil:
    name = "sigil"

    def __init__(self, keydir):
        self.client = Client(keydir)

    def call(self, method, path, payload=None):
        resp, opened = self.client.call(method, path, payload)
        body = opened if opened is not None else _json_or_text(resp)
        return Reply(resp.status_code, body, resp.text if opened is None else json.dumps(opened))


class Bao:
    name = "bao"

    def __init__(self, addr, token):
        self.addr = addr.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["X-Vault-Token"] = token

    def call(self, method, path, payload=None):
        headers = {}
        data = None
        if payload is not None:
            data = json.dumps(payload)
            headers["Content-Type"] = (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        resp = self.session.request(method, f"{self.addr}/v1/{path}", data=data, headers=headers)
        return Reply(resp.status_code, _json_or_text(resp), resp.text)


# --- Normalization and comparison -------------------------------------------------------------
def placeholder_times(value):
    """Replaces every RFC 3339 string by "<time>"."""
    if isinstance(value, dict):
        return {k: placeholder_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [placeholder_times(v) for v in value]
    if isinstance(value, str) and TIME_RE.match(value):
        return "<time>"
    return value


def time_paths(value, path=""):
    """{json path: timestamp} of every RFC 3339 string in `value`."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(time_paths(v, f"{path}.{k}" if path else k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(time_paths(v, f"{path}[{i}]"))
    elif isinstance(value, str) and TIME_RE.match(value):
        out[path] = value
    return out


def time_relations(a, b):
    """Pairs of timestamps (found in both bodies) that are equal in one and not in the other."""
    ta, tb = time_paths(a), time_paths(b)
    common = sorted(set(ta) & set(tb))
    out = []
    for i, x in enumerate(common):
        for y in common[i + 1 :]:
            ea, eb = ta[x] == ta[y], tb[x] == tb[y]
            if ea != eb:
                out.append(f"{x} {'==' if ea else '!='} {y} in sigil, {'==' if eb else '!='} in bao")
    return out


def split(body):
    """(compared part, envelope part) of a response body."""
    if not isinstance(body, dict):
        return body, {}
    kept = {k: v for k, v in body.items() if k not in ENVELOPE}
    env = {k: v for k, v in body.items() if k in ENVELOPE and k != "request_id"}
    return kept, env


MISSING = object()


def diff(a, b, path=""):
    """[(json path, a value, b value)] where `a` and `b` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k, MISSING), b.get(k, MISSING), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    if a is MISSING or b is MISSING or a != b or type(a) is not type(b):
        return [(path or "<body>", a, b)]
    return []


def show(v):
    return "(absent)" if v is MISSING else json.dumps(v, sort_keys=True)


# --- The sequence -----------------------------------------------------------------------------
class Step:
    def __init__(self, name, method, path, payload=None, keep_keys=None, note=""):
        self.name, self.method, self.path, self.payload = name, method, path, payload
        # For a LIST of a shared folder (the mount's root): which keys belong to this run.
        self.keep_keys = keep_keys
        self.note = note


def sequence(p):
    """The steps, for secrets under the folder `p` (unique per run). Secrets that one server
    may refuse to create live in the sibling folder `side`, so that the listings of `p` compare
    what they list, not an earlier step's difference."""
    app = f"{p}/app"
    side = f"{p}-side"
    v1 = {"user": "alice", "pass": "s3cret", "nested": {"k": "v", "deep": {"x": 1}}, "list": [1, "two"]}
    v2 = {"user": "alice", "pass": "rotated", "nested": {"k": "v", "deep": {"x": 2}}}
    S = Step
    return [
        # The engine's configuration, reset first: it is shared by every run on the server.
        S("config-reset", "POST", "secret/config", {"max_versions": 0, "cas_required": False}),
        S("config-read-default", "GET", "secret/config"),
        # Writes, check-and-set.
        S("write-v1", "POST", f"secret/data/{app}", {"data": v1}),
        S("write-v2-cas", "POST", f"secret/data/{app}", {"data": v2, "options": {"cas": 1}}),
        S("write-wrong-cas", "POST", f"secret/data/{app}", {"data": {"x": "y"}, "options": {"cas": 1}}),
        S("write-cas0-on-existing", "POST", f"secret/data/{app}", {"data": {"x": "y"}, "options": {"cas": 0}}),
        S("write-put-method", "PUT", f"secret/data/{p}/put", {"data": {"via": "put"}}),
        S("write-cas0-new", "POST", f"secret/data/{p}/fresh", {"data": {"a": "1"}, "options": {"cas": 0}}),
        S("write-no-data", "POST", f"secret/data/{p}/nodata", {"options": {}}),
        S("write-empty-data", "POST", f"secret/data/{p}/empty", {"data": {}}),
        S("read-empty-data", "GET", f"secret/data/{p}/empty"),
        S("write-unknown-field", "POST", f"secret/data/{side}/extra", {"data": {"a": "1"}, "bogus": 1}),
        S("write-cas-as-string", "POST", f"secret/data/{side}/cas-string", {"data": {"a": "1"}, "options": {"cas": "0"}}),
        # Reads.
        S("read-latest", "GET", f"secret/data/{app}"),
        S("read-version-1", "GET", f"secret/data/{app}?version=1"),
        S("read-version-0", "GET", f"secret/data/{app}?version=0"),
        S("read-version-missing", "GET", f"secret/data/{app}?version=99"),
        # PATCH: a JSON merge patch of the latest version.
        S("patch", "PATCH", f"secret/data/{app}", {"data": {"pass": "patched", "nested": {"deep": None}, "added": "x"}}),
        S("patch-cas", "PATCH", f"secret/data/{app}", {"data": {"more": True}, "options": {"cas": 3}}),
        S("patch-wrong-cas", "PATCH", f"secret/data/{app}", {"data": {"x": "y"}, "options": {"cas": 1}}),
        S("patch-no-data", "PATCH", f"secret/data/{app}", {"options": {"cas": 4}}),
        S("read-after-patch", "GET", f"secret/data/{app}"),
        # Subkeys.
        S("subkeys", "GET", f"secret/subkeys/{app}"),
        S("subkeys-depth-1", "GET", f"secret/subkeys/{app}?depth=1"),
        S("subkeys-version-1", "GET", f"secret/subkeys/{app}?version=1"),
        # Soft delete of the latest version.
        S("delete-latest", "DELETE", f"secret/data/{app}"),
        S("read-deleted-latest", "GET", f"secret/data/{app}"),
        S("subkeys-deleted-latest", "GET", f"secret/subkeys/{app}"),
        S("patch-deleted-latest", "PATCH", f"secret/data/{app}", {"data": {"x": "y"}}),
        S("delete-latest-again", "DELETE", f"secret/data/{app}"),
        # Delete, undelete, destroy listed versions.
        S("delete-version-1", "POST", f"secret/delete/{app}", {"versions": [1]}),
        S("read-deleted-version-1", "GET", f"secret/data/{app}?version=1"),
        S("delete-no-versions", "POST", f"secret/delete/{app}", {}),
        S("undelete-1-and-4", "POST", f"secret/undelete/{app}", {"versions": [1, 4]}),
        S("read-undeleted-version-1", "GET", f"secret/data/{app}?version=1"),
        S("read-undeleted-latest", "GET", f"secret/data/{app}"),
        S("destroy-version-1", "POST", f"secret/destroy/{app}", {"versions": [1]}),
        S("read-destroyed-version-1", "GET", f"secret/data/{app}?version=1"),
        S("undelete-destroyed", "POST", f"secret/undelete/{app}", {"versions": [1]}),
        S("read-destroyed-after-undelete", "GET", f"secret/data/{app}?version=1"),
        S("delete-versions-as-string", "POST", f"secret/delete/{app}", {"versions": "2,3"}),
        S("destroy-no-versions", "POST", f"secret/destroy/{app}", {"versions": []}),
        S("undelete-no-versions", "POST", f"secret/undelete/{app}", {}),
        S("destroy-missing-secret", "POST", f"secret/destroy/{p}/nope", {"versions": [1]}),
        S("delete-missing-secret", "DELETE", f"secret/data/{p}/nope"),
        S("undelete-missing-secret", "POST", f"secret/undelete/{p}/nope", {"versions": [1]}),
        # Metadata.
        S("metadata-read", "GET", f"secret/metadata/{app}"),
        S("metadata-write", "POST", f"secret/metadata/{app}",
          {"max_versions": 5, "cas_required": True, "custom_metadata": {"owner": "ops", "env": "test"}}),
        S("metadata-read-after-write", "GET", f"secret/metadata/{app}"),
        S("read-latest-with-custom-metadata", "GET", f"secret/data/{app}"),
        S("write-without-cas-when-secret-requires-it", "POST", f"secret/data/{app}", {"data": {"x": "y"}}),
        S("patch-without-cas-when-secret-requires-it", "PATCH", f"secret/data/{app}", {"data": {"x": "y"}}),
        S("write-with-cas-when-secret-requires-it", "POST", f"secret/data/{app}", {"data": {"x": "y"}, "options": {"cas": 4}}),
        S("metadata-patch", "PATCH", f"secret/metadata/{app}",
          {"custom_metadata": {"env": None, "team": "blue"}, "max_versions": 3}),
        S("metadata-read-after-patch", "GET", f"secret/metadata/{app}"),
        S("metadata-write-replaces-custom", "POST", f"secret/metadata/{app}", {"custom_metadata": {"only": "this"}}),
        S("metadata-read-after-replace", "GET", f"secret/metadata/{app}"),
        S("metadata-write-cas-not-required", "POST", f"secret/metadata/{app}", {"cas_required": False}),
        S("metadata-write-delete-version-after", "POST", f"secret/metadata/{side}/dva", {"delete_version_after": "1h"}),
        S("metadata-read-delete-version-after", "GET", f"secret/metadata/{side}/dva"),
        # A secret created by its metadata alone; max_versions trimming.
        S("metadata-create-only", "POST", f"secret/metadata/{p}/trim", {"max_versions": 2}),
        S("metadata-read-no-versions", "GET", f"secret/metadata/{p}/trim"),
        S("read-metadata-only-secret", "GET", f"secret/data/{p}/trim"),
        S("trim-write-1", "POST", f"secret/data/{p}/trim", {"data": {"n": 1}}),
        S("trim-write-2", "POST", f"secret/data/{p}/trim", {"data": {"n": 2}}),
        S("trim-metadata-at-max", "GET", f"secret/metadata/{p}/trim"),
        S("trim-write-3", "POST", f"secret/data/{p}/trim", {"data": {"n": 3}}),
        S("trim-metadata-over-max", "GET", f"secret/metadata/{p}/trim"),
        S("trim-read-trimmed-version", "GET", f"secret/data/{p}/trim?version=1"),
        S("trim-lower-max-versions", "POST", f"secret/metadata/{p}/trim", {"max_versions": 1}),
        S("trim-metadata-after-lowering", "GET", f"secret/metadata/{p}/trim"),
        S("trim-write-4", "POST", f"secret/data/{p}/trim", {"data": {"n": 4}}),
        S("trim-metadata-after-write", "GET", f"secret/metadata/{p}/trim"),
        # The engine's config: cas_required and max_versions for every secret.
        S("config-write", "POST", "secret/config", {"max_versions": 3, "cas_required": True}),
        S("config-read", "GET", "secret/config"),
        S("write-without-cas-when-config-requires-it", "POST", f"secret/data/{p}/cfg", {"data": {"n": 0}}),
        S("cfg-write-1", "POST", f"secret/data/{p}/cfg", {"data": {"n": 1}, "options": {"cas": 0}}),
        S("cfg-write-2", "POST", f"secret/data/{p}/cfg", {"data": {"n": 2}, "options": {"cas": 1}}),
        S("cfg-write-3", "POST", f"secret/data/{p}/cfg", {"data": {"n": 3}, "options": {"cas": 2}}),
        S("cfg-write-4", "POST", f"secret/data/{p}/cfg", {"data": {"n": 4}, "options": {"cas": 3}}),
        S("cfg-metadata-config-max-versions", "GET", f"secret/metadata/{p}/cfg"),
        S("patch-without-cas-when-config-requires-it", "PATCH", f"secret/data/{p}/cfg", {"data": {"n": 5}}),
        S("cfg-secret-max-above-config", "POST", f"secret/metadata/{p}/cfg", {"max_versions": 5}),
        S("cfg-write-5", "POST", f"secret/data/{p}/cfg", {"data": {"n": 5}, "options": {"cas": 4}}),
        S("cfg-write-6", "POST", f"secret/data/{p}/cfg", {"data": {"n": 6}, "options": {"cas": 5}}),
        S("cfg-metadata-secret-max-above-config", "GET", f"secret/metadata/{p}/cfg"),
        S("cfg-secret-max-below-config", "POST", f"secret/metadata/{p}/cfg", {"max_versions": 2}),
        S("cfg-write-7", "POST", f"secret/data/{p}/cfg", {"data": {"n": 7}, "options": {"cas": 6}}),
        S("cfg-metadata-secret-max-below-config", "GET", f"secret/metadata/{p}/cfg"),
        S("config-write-strings", "POST", "secret/config", {"max_versions": "4", "cas_required": "false"}),
        S("config-read-after-strings", "GET", "secret/config"),
        S("config-reset-again", "POST", "secret/config", {"max_versions": 0, "cas_required": False}),
        S("config-read-after-reset", "GET", "secret/config"),
        S("config-patch", "PATCH", "secret/config", {"max_versions": 1}),
        # Listing, with nested folders.
        S("nested-write-1", "POST", f"secret/data/{p}/team/one", {"data": {"a": "1"}}),
        S("nested-write-2", "POST", f"secret/data/{p}/team/two", {"data": {"a": "2"}}),
        S("nested-write-3", "POST", f"secret/data/{p}/team/sub/three", {"data": {"a": "3"}}),
        S("nested-write-4", "POST", f"secret/data/{p}/team/sub/deeper/four", {"data": {"a": "4"}}),
        S("nested-write-folder-and-leaf", "POST", f"secret/data/{p}/team", {"data": {"a": "t"}}),
        S("list-run-folder", "LIST", f"secret/metadata/{p}/"),
        S("list-run-folder-no-slash", "LIST", f"secret/metadata/{p}"),
        S("list-get-list-true", "GET", f"secret/metadata/{p}/team/?list=true"),
        S("list-nested", "LIST", f"secret/metadata/{p}/team/sub/"),
        S("list-missing-folder", "LIST", f"secret/metadata/{p}/missing/"),
        S("list-leaf", "LIST", f"secret/metadata/{p}/team/one"),
        S("list-root", "LIST", "secret/metadata/", keep_keys=lambda k: k == f"{p}/",
          note="keys of other runs on the same server are left out"),
        # Missing paths.
        S("read-missing", "GET", f"secret/data/{p}/nope"),
        S("read-missing-version", "GET", f"secret/data/{p}/nope?version=1"),
        S("subkeys-missing", "GET", f"secret/subkeys/{p}/nope"),
        S("metadata-read-missing", "GET", f"secret/metadata/{p}/nope"),
        S("patch-missing", "PATCH", f"secret/data/{p}/nope", {"data": {"a": "1"}}),
        S("metadata-patch-missing", "PATCH", f"secret/metadata/{p}/nope", {"max_versions": 1}),
        S("metadata-delete-missing", "DELETE", f"secret/metadata/{p}/nope"),
        # Deleting all versions and the metadata.
        S("metadata-delete", "DELETE", f"secret/metadata/{app}"),
        S("read-after-metadata-delete", "GET", f"secret/data/{app}"),
        S("metadata-read-after-delete", "GET", f"secret/metadata/{app}"),
        S("list-after-metadata-delete", "LIST", f"secret/metadata/{p}/"),
        S("write-after-metadata-delete", "POST", f"secret/data/{app}", {"data": {"again": "1"}}),
        # Not a KV v2 endpoint: a v1-style path on the v2 mount.
        S("kv-v1-style-path", "GET", f"secret/{app}"),
    ]


# --- Running and reporting --------------------------------------------------------------------
def keep_list_keys(body, keep):
    keys = (body.get("data") or {}).get("keys") if isinstance(body, dict) else None
    if isinstance(keys, list):
        body["data"]["keys"] = [k for k in keys if keep(k)]


def run(sigil, bao, prefix, record=None):
    failures = 0
    allowed_seen = 0
    envelope_notes = {}
    log = []
    for step in sequence(prefix):
        s = sigil.call(step.method, step.path, step.payload)
        b = bao.call(step.method, step.path, step.payload)
        s_kept, s_env = split(s.body)
        b_kept, b_env = split(b.body)
        if step.keep_keys:
            keep_list_keys(s_kept, step.keep_keys)
            keep_list_keys(b_kept, step.keep_keys)
        s_norm, b_norm = placeholder_times(s_kept), placeholder_times(b_kept)
        diffs = []
        if s.status != b.status:
            diffs.append(("status", s.status, b.status))
        diffs += diff(s_norm, b_norm)
        unexpected, accepted = [], []
        # A documented error-body difference holds only when both bodies have its shape.
        shape = next((a for a in ALLOWED if isinstance(a, AllowedError) and step.name in a.steps), None)
        if shape is not None and not shape.shapes_hold(s_norm, b_norm):
            unexpected.append(("<body shape>", s_norm, b_norm))
        for d in diffs:
            rule = next((a for a in ALLOWED if a.covers(step.name, *d)), None)
            if rule:
                accepted.append((d, rule))
            else:
                unexpected.append(d)
        relations = time_relations(s_kept, b_kept)
        warnings = b_env.get("warnings") or []
        for path, a, c in diff(s_env, b_env):
            if path != "warnings":
                envelope_notes.setdefault((path, show(a), show(c)), []).append(step.name)

        mark = "DIFF" if unexpected else ("ok*" if accepted else "ok")
        print(f"[{mark:4}] {step.name}: {step.method} {step.path}  (sigil {s.status}, bao {b.status})")
        for path, a, c in unexpected:
            print(f"         {path}: sigil {show(a)}  !=  bao {show(c)}")
        if unexpected:
            print(f"         request:    {json.dumps(step.payload)}")
            print(f"         sigil body: {json.dumps(s_norm, sort_keys=True)}")
            print(f"         bao body:   {json.dumps(b_norm, sort_keys=True)}")
        for (path, a, c), rule in accepted:
            print(f"         allowed {path}: sigil {show(a)}, bao {show(c)} ({rule.reason})")
        for w in warnings:
            print(f"         note: bao warns: {w}")
        for r in relations:
            print(f"         note (times, not compared): {r}")
        if step.note:
            print(f"         ({step.note})")
        failures += bool(unexpected)
        allowed_seen += bool(accepted)
        log.append({
            "step": step.name,
            "request": {"method": step.method, "path": step.path, "payload": step.payload},
            "sigil": {"status": s.status, "body": s.body},
            "bao": {"status": b.status, "body": b.body},
            "unexpected": [[p, show(a), show(c)] for p, a, c in unexpected],
            "allowed": [[p, show(a), show(c), r.reason] for (p, a, c), r in accepted],
            "bao_warnings": warnings,
            "time_notes": relations,
        })
    if envelope_notes:
        print()
        print("envelope members (set aside, not compared):")
        for (path, a, c), steps in sorted(envelope_notes.items()):
            print(f"  {path}: sigil {a}, bao {c} -- in {len(steps)} step(s), e.g. {steps[0]}")
    if record:
        with open(record, "w") as f:
            json.dump(log, f, indent=2, sort_keys=True)
    print()
    print(f"golden kv: {len(log) - failures} steps match, {failures} differ"
          f" ({allowed_seen} with allowed differences)")
    return failures


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sigil_keydir")
    parser.add_argument("bao_addr")
    parser.add_argument("bao_token")
    parser.add_argument("--record", help="write every step's requests and raw bodies to this JSON file")
    args = parser.parse_args(argv)
    prefix = "golden-" + secrets.token_hex(4)
    print(f"run folder: secret/{prefix}/")
    sigil, bao = Sigil(args.sigil_keydir), Bao(args.bao_addr, args.bao_token)
    try:
        failures = run(sigil, bao, prefix, args.record)
    finally:
        # Leave the shared engine config as a fresh server has it.
        for server in (sigil, bao):
            try:
                server.call("POST", "secret/config", {"max_versions": 0, "cas_required": False})
            except Exception as e:  # noqa: BLE001 - best effort clean-up
                print(f"warning: resetting {server.name}'s config failed: {e}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
