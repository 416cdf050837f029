//! The wire contract, byte for byte: signatures, replay, tampering, sealing, hostile input.

mod support;

use serde_json::json;
use support::raw::{Raw, now};
use support::{Server, ok};

async fn setup() -> (Server, Raw) {
    setup_with(&[]).await
}

/// A transient server with `extra` flags, a secret at `secret/app`, and a raw client.
async fn setup_with(extra: &[&str]) -> (Server, Raw) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut args = vec!["--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_in(tmp, &args, &[]);
    ok(s.sigil(&["kv", "put", "secret/app", "password=correct-horse-battery"]));
    let raw = Raw::new(&s, &s.admin_key()).await;
    (s, raw)
}

async fn assert_healthy(raw: &Raw) {
    let r = raw.send(&raw.unsigned("GET", "/v1/sys/health")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sealed"], false);
}

#[tokio::test]
async fn unauthenticated_endpoints_answer_plain_json() {
    let (s, raw) = setup().await;
    let r = raw.send(&raw.unsigned("GET", "/v1/sys/server-key")).await;
    assert_eq!(r.json()["keyid"], s.var("SIGIL_SERVER_KEY"));
    assert!(
        r.json()["public_key"]
            .as_str()
            .unwrap()
            .starts_with("sigil1")
    );
    let r = raw.send(&raw.unsigned("GET", "/v1/sys/seal-status")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["initialized"], true);
    assert_healthy(&raw).await;
}

#[tokio::test]
async fn requests_without_a_signature_or_with_tokens_are_refused() {
    let (_s, raw) = setup().await;
    let mut cases = vec![raw.unsigned("GET", "/v1/secret/data/app")];
    let mut vault_token = raw.unsigned("GET", "/v1/secret/data/app");
    vault_token
        .headers
        .push(("X-Vault-Token".into(), "hvs.root".into()));
    cases.push(vault_token);
    let mut bearer = raw.unsigned("GET", "/v1/secret/data/app");
    bearer
        .headers
        .push(("Authorization".into(), "Bearer abc".into()));
    cases.push(bearer);
    // A token next to a valid signature is refused too.
    let mut both = raw.signed("GET", "/v1/secret/data/app", None);
    both.headers
        .push(("X-Vault-Token".into(), "hvs.root".into()));
    cases.push(both);
    for req in cases {
        let r = raw.send(&req).await;
        assert_eq!(r.status, 401, "{req:?}");
        assert!(r.error_text().contains("tokens"), "{}", r.error_text());
        assert!(!String::from_utf8_lossy(&r.body).contains("correct-horse"));
    }
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let (_s, raw) = setup().await;
    let req = raw.signed("GET", "/v1/secret/data/app", None);
    assert_eq!(raw.send(&req).await.status, 200);
    let again = raw.send(&req).await;
    assert_eq!(again.status, 401);
    assert!(
        again.error_text().contains("replay"),
        "{}",
        again.error_text()
    );
    // A replayed write does not write twice.
    let w = raw.signed("POST", "/v1/secret/data/w", Some(br#"{"data":{"n":"1"}}"#));
    assert_eq!(raw.send(&w).await.status, 200);
    assert_eq!(raw.send(&w).await.status, 401);
    let read = raw.signed("GET", "/v1/secret/data/w", None);
    let resp = raw.send(&read).await;
    assert_eq!(raw.open(&read, &resp)["data"]["metadata"]["version"], 1);
}

#[tokio::test]
async fn tampering_with_body_path_or_method_is_refused() {
    let (_s, raw) = setup().await;
    let base = raw.signed("POST", "/v1/secret/data/t", Some(br#"{"data":{"a":"1"}}"#));

    // Body changed, digest left: digest mismatch.
    let mut body = base.clone();
    let last = body.body.len() - 3;
    body.body[last] ^= 1;
    // Body and digest changed consistently: the signature no longer verifies.
    let mut digest = body.clone();
    for (k, v) in digest.headers.iter_mut() {
        if k == "Content-Digest" {
            *v = sigil_proto::signature::content_digest(&digest.body);
        }
    }
    let mut path = base.clone();
    path.target = "/v1/secret/data/u".into();
    let mut method = base.clone();
    method.method = "PUT".into();
    let mut query = raw.signed("GET", "/v1/secret/data/app", None);
    query.target = "/v1/secret/data/app?version=1".into();
    let mut sig = raw.signed("GET", "/v1/secret/data/app", None);
    for (k, v) in sig.headers.iter_mut() {
        if k == "Signature" {
            let mut b = v.clone().into_bytes();
            b[7] = if b[7] == b'A' { b'B' } else { b'A' };
            *v = String::from_utf8(b).unwrap();
        }
    }
    for (name, req) in [
        ("body", body),
        ("digest", digest),
        ("path", path),
        ("method", method),
        ("query", query),
        ("signature", sig),
    ] {
        let r = raw.send(&req).await;
        assert_eq!(
            r.status,
            401,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Nothing was written by the refused requests.
    let read = raw.signed("GET", "/v1/secret/data/t", None);
    assert_eq!(raw.send(&read).await.status, 404);
    let read = raw.signed("GET", "/v1/secret/data/u", None);
    assert_eq!(raw.send(&read).await.status, 404);
    // The untampered request still works (its nonce was never accepted).
    assert_eq!(raw.send(&base).await.status, 200);
}

#[tokio::test]
async fn stale_and_overlong_signatures_are_refused() {
    let (_s, raw) = setup().await;
    let t = now();
    for (name, created, expires) in [
        ("ten minutes old", t - 600, t - 540),
        ("expired", t - 120, t - 1),
        ("from the future", t + 120, t + 180),
        ("validity over 300 s", t, t + 301),
        ("expires before created", t, t - 1),
    ] {
        let req = raw.signed_at("GET", "/v1/secret/data/app", None, created, expires);
        let r = raw.send(&req).await;
        assert_eq!(r.status, 401, "{name}");
    }
    // The longest validity allowed. (Not from before the test: a transient server refuses
    // signatures older than itself.)
    let ok = raw.signed_at("GET", "/v1/secret/data/app", None, t, t + 300);
    assert_eq!(raw.send(&ok).await.status, 200);
}

/// The SDK speaks HTTP/1.1; Go's clients, curl and browsers negotiate HTTP/2. Signed, sealed
/// requests work the same over it, a replay included.
#[tokio::test]
async fn signed_sealed_requests_work_over_http2() {
    let (_s, raw) = setup().await;
    let req = raw.signed("GET", "/v1/secret/data/app", None);
    let resp = raw.send_h2(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let opened = raw.open(&req, &resp);
    assert_eq!(opened["data"]["data"]["password"], "correct-horse-battery");
    assert_eq!(raw.send_h2(&req).await.status, 401, "a replay over HTTP/2");

    let body = serde_json::to_vec(&json!({ "data": { "k": "over-h2" } })).unwrap();
    let req = raw.signed("POST", "/v1/secret/data/h2", Some(&body));
    assert_eq!(raw.send_h2(&req).await.status, 200);
    let req = raw.signed("GET", "/v1/secret/data/h2", None);
    let resp = raw.send(&req).await;
    assert_eq!(raw.open(&req, &resp)["data"]["data"]["k"], "over-h2");
}

#[tokio::test]
async fn a_kv_read_is_sealed_to_the_caller_only() {
    let (s, raw) = setup().await;
    let req = raw.signed("GET", "/v1/secret/data/app", None);
    let resp = raw.send(&req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.sigil.sealed+json")
    );
    assert!(!resp.body.windows(9).any(|w| w == b"correct-h"));
    let env = resp.json();
    assert_eq!(env.as_object().unwrap().len(), 2, "{env}");
    assert!(env["enc"].is_string() && env["ct"].is_string());

    let opened = raw.open(&req, &resp);
    assert_eq!(opened["data"]["data"]["password"], "correct-horse-battery");
    assert_eq!(opened["mount_type"], "kv");

    // Another identity's key cannot open it, nor can the right key with another nonce.
    let other_key = s.new_key("other");
    let other = Raw::new(&s, &other_key).await;
    let plain = sigil_proto::body::open(
        other.key.encryption_key(),
        raw.server.encryption_key(),
        sigil_crypto::SealInfo::Response,
        &req.nonce,
        &resp.body,
    );
    assert!(plain.is_err());
    let plain = sigil_proto::body::open(
        raw.key.encryption_key(),
        raw.server.encryption_key(),
        sigil_crypto::SealInfo::Response,
        "another-nonce-aaaaaaaaaaaa",
        &resp.body,
    );
    assert!(plain.is_err());
}

#[tokio::test]
async fn bad_input_gets_a_clean_4xx_and_the_server_keeps_serving() {
    let (mut s, raw) = setup_with(&["--max-request-bytes", "1048576"]).await;
    let t = now();
    let nonce = || sigil_crypto::random::nonce().unwrap();

    // Sealed but not JSON, and sealed but not UTF-8.
    for plain in [&b"{\"data\": "[..], b"\xff\xfe\x00garbage"] {
        let req = raw.signed("POST", "/v1/secret/data/bad", Some(plain));
        let r = raw.send(&req).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }
    // JSON of the wrong shape.
    let req = raw.signed(
        "POST",
        "/v1/secret/data/bad",
        Some(br#"{"data":"not an object"}"#),
    );
    assert_eq!(raw.send(&req).await.status, 400);
    // A body that is not sealed at all (signed as is).
    let req = raw.sign_raw(
        "POST",
        "/v1/secret/data/bad",
        Some(br#"{"data":{"a":"1"}}"#.to_vec()),
        nonce(),
        t,
        t + 60,
    );
    let r = raw.send(&req).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // A sealed envelope that is garbage.
    let req = raw.sign_raw(
        "POST",
        "/v1/secret/data/bad",
        Some(br#"{"enc":"AAAA","ct":"AAAA"}"#.to_vec()),
        nonce(),
        t,
        t + 60,
    );
    assert_eq!(raw.send(&req).await.status, 400);
    // A body sealed with another nonce than the signature's.
    let mut mixed = raw.signed(
        "POST",
        "/v1/secret/data/bad",
        Some(br#"{"data":{"a":"1"}}"#),
    );
    let other = raw.signed(
        "POST",
        "/v1/secret/data/bad",
        Some(br#"{"data":{"a":"1"}}"#),
    );
    mixed.body = other.body.clone();
    let resigned = raw.sign_raw(
        "POST",
        "/v1/secret/data/bad",
        Some(mixed.body.clone()),
        mixed.nonce.clone(),
        t,
        t + 60,
    );
    assert_eq!(raw.send(&resigned).await.status, 400);

    // Oversized body: 413, whether declared or sent; the answer says the size and the limit.
    let big = vec![b'a'; 2 * 1024 * 1024];
    let req = raw.sign_raw("POST", "/v1/secret/data/bad", Some(big), nonce(), t, t + 60);
    let r = raw.send(&req).await;
    assert_eq!(r.status, 413);
    assert!(
        r.error_text().contains("2097152 bytes") && r.error_text().contains("limit is 1048576"),
        "{}",
        r.error_text()
    );
    // Oversized header: 431.
    let mut req = raw.signed("GET", "/v1/secret/data/app", None);
    req.headers
        .push(("X-Padding".into(), "a".repeat(100 * 1024)));
    assert_eq!(raw.send(&req).await.status, 431);
    // Malformed signature headers.
    let mut req = raw.unsigned("GET", "/v1/secret/data/app");
    req.headers
        .push(("Signature-Input".into(), "sig1=(((".into()));
    req.headers.push(("Signature".into(), "sig1=:AAAA:".into()));
    assert_eq!(raw.send(&req).await.status, 401);

    // Path tricks, properly signed: refused by the path check, never reaching storage.
    for target in [
        "/v1/secret/data/../../sys/policies/acl/admin",
        "/v1/secret/data/%2e%2e/x",
        "/v1/secret/data/%2E%2E/x",
        "/v1/secret//data/app",
        "/v1/secret/data/./app",
        "/v1/secret/data/a%00b",
        "/v1/secret/data/%zz",
        "/v1/secret/data/%ff",
    ] {
        let req = raw.signed("GET", target, None);
        let r = raw.send(&req).await;
        assert_eq!(
            r.status,
            400,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Not HTTP at all.
    let r = raw.send_bytes(b"\x00\x01\x02 garbage\r\n\r\n").await;
    assert_eq!(r.status, 400);
    // Unknown routes and methods.
    let req = raw.signed("GET", "/v1/nope/x", None);
    assert_eq!(raw.send(&req).await.status, 404);
    let req = raw.signed("GET", "/elsewhere", None);
    assert_eq!(raw.send(&req).await.status, 404);
    let req = raw.signed("TRACE", "/v1/secret/data/app", None);
    assert_eq!(raw.send(&req).await.status, 405);

    assert!(s.is_running());
    assert_healthy(&raw).await;
    let req = raw.signed("GET", "/v1/secret/data/app", None);
    let resp = raw.send(&req).await;
    assert_eq!(
        raw.open(&req, &resp)["data"]["data"]["password"],
        "correct-horse-battery"
    );
    let req = raw.signed("LIST", "/v1/secret/metadata/", None);
    let resp = raw.send(&req).await;
    assert_eq!(raw.open(&req, &resp)["data"]["keys"], json!(["app"]));
}

#[tokio::test]
async fn errors_never_echo_secret_values() {
    let (_s, raw) = setup().await;
    for body in [
        &br#"{"data":"hunter2-in-the-wrong-place"}"#[..],
        br#"{"data":{"a":"b"},"options":{"cas":"hunter2-in-the-wrong-place"}}"#,
        br#"{"data":{"a":"b"},"hunter2-in-the-wrong-place":1}"#,
    ] {
        let req = raw.signed("POST", "/v1/secret/data/x", Some(body));
        let r = raw.send(&req).await;
        assert_eq!(r.status, 400);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("hunter2"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let req = raw.signed(
        "POST",
        "/v1/identity/entity/name/x",
        Some(br#"{"public_key":"hunter2-in-the-wrong-place","policies":7}"#),
    );
    let r = raw.send(&req).await;
    assert_eq!(r.status, 400);
    assert!(!String::from_utf8_lossy(&r.body).contains("hunter2"));
}

#[tokio::test]
async fn a_request_addressed_to_another_server_is_refused() {
    let (s, mut raw) = setup().await;
    raw.host_override = Some("sigil.other.example:8200".into());
    let req = raw.signed("GET", "/v1/secret/data/app", None);
    let r = raw.send(&req).await;
    assert_eq!(r.status, 401);
    assert!(
        r.error_text()
            .contains("not a name and port of this server"),
        "{}",
        r.error_text()
    );
    // Names of this server are fine at its port, in any case; at another port, or with none
    // (443), they are not (security review, finding 4).
    let port = s.addr().port();
    for (host, status) in [
        (format!("localhost:{port}"), 200),
        (format!("LOCALHOST:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        ("localhost".to_owned(), 401),
        ("LOCALHOST:1".to_owned(), 401),
    ] {
        raw.host_override = Some(host.clone());
        let req = raw.signed("GET", "/v1/secret/data/app", None);
        assert_eq!(raw.send(&req).await.status, status, "{host}");
    }
}

#[tokio::test]
async fn bearer_tokens_are_refused_in_any_spelling() {
    let (_s, raw) = setup().await;
    for value in ["Bearer x", "bearer\tx", "BEARER", "  Bearer   x"] {
        let mut req = raw.signed("GET", "/v1/secret/data/app", None);
        req.headers.push(("Authorization".into(), value.into()));
        let r = raw.send(&req).await;
        assert_eq!(r.status, 401, "{value}");
        assert!(r.error_text().contains("tokens"), "{value}");
    }
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused() {
    let (_s, raw) = setup_with(&["--max-request-bytes", "1048576"]).await;
    let chunk = vec![b'a'; 64 * 1024];
    // Signed: the body is read only once the signature verified.
    let t = now();
    let nonce = sigil_crypto::random::nonce().unwrap();
    let signed = raw.sign_raw(
        "POST",
        "/v1/secret/data/big",
        Some(chunk.repeat(20)),
        nonce,
        t,
        t + 60,
    );
    let mut head = format!(
        "POST /v1/secret/data/big HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n",
        raw.host()
    );
    for (k, v) in &signed.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    for _ in 0..20 {
        bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(&chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw.send_bytes(&bytes).await.status, 413);
    assert_healthy(&raw).await;
}

#[tokio::test]
async fn policy_names_must_be_lower_case() {
    let (_s, raw) = setup().await;
    let req = raw.signed(
        "PUT",
        "/v1/sys/policies/acl/BreakGlass",
        Some(br#"{"policy":"path \"x\" { capabilities = [\"read\"] }"}"#),
    );
    let r = raw.send(&req).await;
    assert_eq!(r.status, 400);
    assert!(r.error_text().contains("lower case"));
}

#[tokio::test]
async fn list_works_with_the_list_method_and_the_query_flag() {
    let (_s, raw) = setup().await;
    for (method, target) in [
        ("LIST", "/v1/secret/metadata"),
        ("GET", "/v1/secret/metadata/?list=true"),
    ] {
        let req = raw.signed(method, target, None);
        let resp = raw.send(&req).await;
        assert_eq!(resp.status, 200, "{method} {target}");
        assert_eq!(raw.open(&req, &resp)["data"]["keys"], json!(["app"]));
    }
}

async fn limited(extra: &[&str]) -> (Server, Raw) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut args = vec!["--dir".to_owned(), dir.to_str().unwrap().to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_in(tmp, &args, &[]);
    let raw = Raw::new(&s, &s.admin_key()).await;
    (s, raw)
}

// The rate-limit tests use a rate low enough (one request per 100 s, a burst of 1) that how
// fast this machine sends makes no difference; the refill over time is a unit test with the
// clock passed in (sigil-server `limits.rs`).

#[tokio::test]
async fn a_burst_above_the_identity_limit_gets_429_and_others_are_unaffected() {
    let (s, admin) = limited(&["--limit-identity", "0.01"]).await;
    let bob = Raw::new(&s, &s.new_identity("bob", &[])).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = admin
            .send(&admin.signed("GET", "/v1/secret/data/x", None))
            .await;
        if r.status == 429 {
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=100).contains(&retry), "{retry}");
            assert!(r.error_text().contains("rate limited"));
        }
        statuses.push(r.status);
    }
    // The admin's one token may have gone to creating bob; at most one request passed.
    let passed = statuses.iter().filter(|s| **s != 429).count();
    assert!(passed <= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 429 || *s == 404),
        "{statuses:?}"
    );
    // Bob has his own bucket: not limited (403: no policy, but not 429).
    let r = bob
        .send(&bob.signed("GET", "/v1/secret/data/x", None))
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn unauthenticated_endpoints_and_failed_authentications_are_limited_per_address() {
    // From an address nothing else used: its budget is whole.
    let (_s, mut raw) = limited(&["--limit-unauthenticated", "0.01"]).await;
    raw.source = Some("127.0.0.7".parse().unwrap());
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            raw.send(&raw.unsigned("GET", "/v1/sys/seal-status"))
                .await
                .status,
        );
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another address has a budget of its own.
    raw.source = Some("127.0.0.8".parse().unwrap());
    assert_eq!(
        raw.send(&raw.unsigned("GET", "/v1/sys/seal-status"))
            .await
            .status,
        200
    );

    let (_s, mut raw) = limited(&["--limit-auth-failures", "0.01"]).await;
    raw.source = Some("127.0.0.9".parse().unwrap());
    let good = raw
        .send(&raw.signed("GET", "/v1/secret/data/x", None))
        .await;
    assert_eq!(good.status, 404, "a good request before any failure");
    let mut req = raw.signed("GET", "/v1/secret/data/x", None);
    req.target = "/v1/secret/data/tampered".into();
    assert_eq!(raw.send(&req).await.status, 401);
    // The budget (one failure) is spent: now even a good request from that address is
    // refused, and further failures too, until it refills.
    for _ in 0..3 {
        let mut req = raw.signed("GET", "/v1/secret/data/x", None);
        req.target = "/v1/secret/data/tampered".into();
        assert_eq!(raw.send(&req).await.status, 429);
    }
    let r = raw
        .send(&raw.signed("GET", "/v1/secret/data/x", None))
        .await;
    assert_eq!(r.status, 429);
    // Another address is not affected.
    raw.source = Some("127.0.0.10".parse().unwrap());
    let r = raw
        .send(&raw.signed("GET", "/v1/secret/data/x", None))
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn prometheus_metrics_on_the_plain_listener_and_sys_metrics() {
    let (s, raw) = limited(&["--metrics-listen", "127.0.0.1:0", "--log-format", "json"]).await;
    ok(s.sigil(&["kv", "put", "secret/app", "v=metric-secret-value"]));
    ok(s.sigil(&["kv", "get", "secret/app"]));
    let stranger = s.new_key("stranger");
    assert!(
        !s.sigil_as(&stranger, &["kv", "get", "secret/app"])
            .status
            .success()
    );

    // JSON logs: one object per line.
    let log = s.log_text();
    let first = log.lines().next().expect("a log line");
    let parsed: serde_json::Value = serde_json::from_str(first).expect("JSON log line");
    assert!(parsed.get("level").is_some(), "{first}");
    let text = s.plain_metrics();
    for needle in [
        "sigil_requests_total{route=\"secret/data/{path}\",method=\"POST\",status=\"200\"}",
        "sigil_auth_failures_total{reason=\"unknown_key\"}",
        "sigil_request_duration_seconds_bucket",
        "sigil_sealed 0",
        "sigil_initialized 1",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(!text.contains("metric-secret-value"));

    // The same through the API, sealed, for identities allowed to read sys/metrics.
    let req = raw.signed("GET", "/v1/sys/metrics", None);
    let resp = raw.send(&req).await;
    assert_eq!(resp.status, 200);
    let body = raw.open(&req, &resp);
    assert!(
        body["data"]["text"]
            .as_str()
            .unwrap()
            .contains("sigil_requests_total")
    );
    let bob = Raw::new(&s, &s.new_identity("bob", &[])).await;
    assert_eq!(
        bob.send(&bob.signed("GET", "/v1/sys/metrics", None))
            .await
            .status,
        403
    );
}

/// Channels (docs/protocol.md §6): granted on request, answering only the identity they were made
/// for; anyone else naming one gets HPKE as usual, and a body sealed to an unknown channel is
/// refused before anything runs.
#[tokio::test]
async fn channels_answer_only_their_identity() {
    let (s, admin) = setup().await;
    s.write_policy(
        "reader",
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let reader_key = s.new_identity("reader", &["reader"]);
    let reader = Raw::new(&s, &reader_key).await;

    let mut ask = admin.signed("GET", "/v1/secret/data/app", None);
    ask.headers.push(("Sigil-Channel".into(), "new".into()));
    let granted = admin.send(&ask).await;
    assert_eq!(granted.status, 200);
    let grant = granted
        .header("sigil-channel")
        .expect("a channel is granted");
    let (id, ttl) = sigil_proto::headers::channel_grant(grant).expect("id; ttl=N");
    assert_eq!(ttl, 3600);
    let envelope: serde_json::Value = serde_json::from_slice(&granted.body).unwrap();
    let sigil_proto::body::Sealed::Hpke(env) = sigil_proto::body::parse(&granted.body).unwrap()
    else {
        panic!("the granting answer is HPKE-sealed: {envelope}");
    };
    let (plain, key) = sigil_crypto::open_from_exporting(
        admin.key.encryption_key(),
        admin.server.encryption_key(),
        sigil_crypto::SealInfo::Response,
        sigil_proto::body::response_aad(200, &ask.nonce).as_bytes(),
        &env,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&plain).contains("correct-horse-battery"));

    // On the channel: the answer is XChaCha20-Poly1305 under the exported key.
    let mut on = admin.signed("GET", "/v1/secret/data/app", None);
    on.headers.push(("Sigil-Channel".into(), id.clone()));
    let answer = admin.send(&on).await;
    let sigil_proto::body::Sealed::Channel { id: ch, nonce, ct } =
        sigil_proto::body::parse(&answer.body).unwrap()
    else {
        panic!("answered on the channel");
    };
    assert_eq!(ch, id);
    let aad = sigil_proto::body::response_aad(200, &on.nonce);
    let opened = sigil_proto::body::open_channel(&key.response, &aad, &nonce, &ct).unwrap();
    // Not with the key for the other direction, nor bound to another status.
    assert!(sigil_proto::body::open_channel(&key.request, &aad, &nonce, &ct).is_err());
    let other = sigil_proto::body::response_aad(204, &on.nonce);
    assert!(sigil_proto::body::open_channel(&key.response, &other, &nonce, &ct).is_err());
    assert!(String::from_utf8_lossy(&opened).contains("correct-horse-battery"));

    // Another identity naming it: HPKE to its own key, as if no channel were named.
    let mut theirs = reader.signed("GET", "/v1/secret/data/app", None);
    theirs.headers.push(("Sigil-Channel".into(), id.clone()));
    let answer = reader.send(&theirs).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        reader.open(&theirs, &answer)["data"]["data"]["password"],
        "correct-horse-battery"
    );

    // A body sealed to a channel the server does not hold: 400, `expired`, nothing written.
    let nonce = sigil_crypto::random::nonce().unwrap();
    let body = sigil_proto::body::seal_channel(
        &key.request,
        "not-a-channel",
        &nonce,
        br#"{"data":{"password":"ghost"}}"#,
    )
    .unwrap();
    let t = now();
    let mut ghost = admin.sign_raw("POST", "/v1/secret/data/app", Some(body), nonce, t, t + 60);
    ghost
        .headers
        .push(("Sigil-Channel".into(), "not-a-channel".into()));
    let refused = admin.send(&ghost).await;
    assert_eq!(refused.status, 400, "{}", refused.error_text());
    // Signed by the server, for this request: the client may send it again.
    let sig = sigil_proto::headers::channel_expired_signature(
        refused.header("sigil-channel").expect("expired; sig=…"),
    )
    .expect("a signature");
    admin
        .server
        .verify(
            &sigil_proto::headers::channel_expired_message(&ghost.nonce),
            &sig,
        )
        .expect("the server's signature");
    assert!(ok(s.sigil(&["kv", "get", "-field=password", "secret/app"])).contains("correct-horse"));
}

/// The SDK does not follow redirects: a signature names its target, and following one would
/// carry the signed headers and the sealed body to whatever host the answer names.
#[tokio::test]
async fn the_sdk_does_not_follow_redirects() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // The host the redirect names: it must never see a connection.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let reached = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&reached);
    tokio::spawn(async move {
        if elsewhere.accept().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    // A TLS server that answers every request with a redirect there.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://127.0.0.1:{elsewhere_port}/v1/sys/health\r\nContent-Length: 0\r\n\r\n"
                    );
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let client = sigil_client::Client::new(sigil_client::ClientConfig {
        addr: format!("https://127.0.0.1:{port}"),
        key: Some(sigil_crypto::SecretIdentity::generate().unwrap()),
        ca_pem: Some(cert.cert.pem().into_bytes()),
        server_keyid: None,
    })
    .unwrap();
    let err = client.plain("GET", "sys/health", None).await.unwrap_err();
    assert!(
        matches!(err, sigil_client::ClientError::Api { status: 307, .. }),
        "{err}"
    );
    // A client that followed would have reached the other server before it returned.
    assert!(!reached.load(Ordering::SeqCst), "the redirect was followed");
}

/// `HTTPS_PROXY` sends the CLI through an HTTP proxy's `CONNECT` tunnel (TLS end to end, with
/// the proxy's credentials from its URL), `NO_PROXY` exempts a host, and a proxy that refuses
/// the tunnel is reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_the_server_through_a_connect_proxy() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

    let s = Server::start();
    ok(s.sigil(&["kv", "put", "secret/proxied", "v=through"]));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut tcp = tokio::io::BufReader::new(tcp);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if tcp.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_owned());
                }
                log.lock().unwrap().push(head.join("\n"));
                let target = head[0].split(' ').nth(1).unwrap().to_owned();
                // "user" / "p@ss", as the URL carries them percent-encoded.
                if !head.contains(&"Proxy-Authorization: Basic dXNlcjpwQHNz".to_owned()) {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                        .await;
                    return;
                }
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
            });
        }
    });
    let admin = s.admin_key();
    let run = |env: Vec<(&'static str, String)>| {
        let (s, admin) = (&s, admin.clone());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        s.sigil_as_env(&admin, &["kv", "get", "-field=v", "secret/proxied"], &env)
    };
    let good = format!("http://user:p%40ss@{proxy}");
    let out = tokio::task::block_in_place(|| run(vec![("HTTPS_PROXY", good.clone())]));
    assert_eq!(ok(out).trim(), "through");
    let connects = seen.lock().unwrap().clone();
    assert!(!connects.is_empty());
    assert!(
        connects
            .iter()
            .all(|h| h.starts_with(&format!("CONNECT {} HTTP/1.1", s.addr()))),
        "{connects:?}"
    );

    let before = seen.lock().unwrap().len();
    let out = tokio::task::block_in_place(|| {
        run(vec![
            ("HTTPS_PROXY", good.clone()),
            ("NO_PROXY", "localhost,127.0.0.1".into()),
        ])
    });
    assert_eq!(ok(out).trim(), "through");
    assert_eq!(seen.lock().unwrap().len(), before, "NO_PROXY went through");

    let out = tokio::task::block_in_place(|| {
        run(vec![("HTTPS_PROXY", format!("http://user:wrong@{proxy}"))])
    });
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("407"), "{stderr}");
}

/// TCP connections from this machine to `port`, in any state (`/proc/net/tcp`): an SDK client
/// that reuses its connections leaves one per request in flight, and no `TIME_WAIT` trail.
fn connections_to(port: u16) -> usize {
    states_to(port).len()
}

/// The TCP state (`/proc/net/tcp`'s hex code) of each connection from this machine to `port`.
fn states_to(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let remote = fields.get(2).copied().unwrap_or_default();
            (remote.rsplit(':').next() == Some(&format!("{port:04X}")[..]))
                .then(|| fields.get(3).copied().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Waits until every connection to `port` is established (01) or in TIME_WAIT (06): a CLI run
/// that just ended leaves its connection closing for a moment, and counting it before it is
/// gone would make a count taken later look one short.
fn settled(port: u16) {
    support::eventually(10, || {
        states_to(port).iter().all(|s| s == "01" || s == "06")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_keeps_one_connection_per_request_in_flight() {
    let s = Server::start();
    ok(s.sigil(&["kv", "put", "secret/reused", "v=1"]));
    let port = s.addr().port();
    settled(port);
    let before = connections_to(port);
    let client = std::sync::Arc::new(s.sdk(&s.admin_key()));
    for _ in 0..200 {
        client
            .request("GET", "secret/data/reused", None)
            .await
            .unwrap();
    }
    assert_eq!(connections_to(port) - before, 1, "one after 200 in a row");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move {
                for _ in 0..100 {
                    client
                        .request("GET", "secret/data/reused", None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = connections_to(port) - before;
    assert!((1..=4).contains(&after), "{after} for 4 requests in flight");
}
