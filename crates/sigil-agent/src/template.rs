//! Templates as Vault Agent and consul-template write them (Go's text/template, by the `gtmpl`
//! crate), with the functions such templates use: `secret`, `pkiCert`, `env`, `toJSON`,
//! `toJSONPretty`, `base64Encode`, `base64Decode`, `toUpper`, `toLower`, `trimSpace`,
//! beside Go's built-ins (`with`, `range`, `index`, `printf`, `eq`, …).
//!
//! Rendering never waits on the network inside the template engine: a render looks secrets
//! up in what was fetched so far and notes what it missed; [`render_fetching`] fetches what
//! was missed and renders again, until nothing is missing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use gtmpl::{FuncError, Value as G};
use serde_json::Value;
use zeroize::Zeroizing;

/// Something a template reads from the server.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dep {
    /// `secret` or `pkiCert`.
    pub kind: DepKind,
    /// The API path.
    pub path: String,
    /// `key=value` arguments: with any, the secret is written (POST), as in Vault Agent.
    pub args: Vec<(String, String)>,
}

/// How a template asked for a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DepKind {
    /// `secret "path" ["k=v" …]`.
    Secret,
    /// `pkiCert "pki/issue/role" "common_name=…"`: a certificate, issued again before expiry.
    PkiCert,
}

/// Argument values are left out: a template may pass a secret (`"plaintext=…"`).
impl std::fmt::Debug for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.args.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Dep")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("arg_keys", &keys)
            .finish()
    }
}

impl Dep {
    /// The request that fetches it: method and body.
    pub fn request(&self) -> (&'static str, Option<Value>) {
        if self.args.is_empty() && self.kind == DepKind::Secret {
            return ("GET", None);
        }
        let body: serde_json::Map<String, Value> = self
            .args
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        ("POST", Some(Value::Object(body)))
    }
}

/// What each dependency answered (Vault's response envelope), by dependency.
pub type Fetched = BTreeMap<Dep, Value>;

/// The state one render reads and notes into; set for the duration of a render on its thread.
struct Session {
    fetched: Fetched,
    missing: Vec<Dep>,
    used: BTreeSet<Dep>,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// A parsed template.
pub struct Template {
    inner: gtmpl::Template,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

/// What one render gave.
enum Rendered {
    Done(Zeroizing<String>, BTreeSet<Dep>),
    Needs(Vec<Dep>),
    Failed(String),
}

impl Template {
    /// Parses `text`; `name` appears in errors.
    pub fn parse(name: &str, text: &str) -> Result<Template, String> {
        check_actions_close(text).map_err(|e| format!("template {name}: {e}"))?;
        let mut inner = gtmpl::Template::with_name(name);
        let funcs: &[(&str, gtmpl::Func)] = &[
            ("secret", secret),
            ("pkiCert", pki_cert),
            ("env", env),
            ("toJSON", to_json),
            ("toJSONPretty", to_json_pretty),
            ("base64Encode", base64_encode),
            ("base64Decode", base64_decode),
            ("toUpper", to_upper),
            ("toLower", to_lower),
            ("trimSpace", trim_space),
        ];
        inner.add_funcs(funcs);
        inner
            .parse(text)
            .map_err(|e| format!("template {name}: {e}"))?;
        Ok(Template { inner })
    }

    fn render_once(&self, fetched: &mut Fetched) -> Rendered {
        SESSION.with(|s| {
            *s.borrow_mut() = Some(Session {
                fetched: std::mem::take(fetched),
                missing: Vec::new(),
                used: BTreeSet::new(),
            })
        });
        let out = self.inner.render(&gtmpl::Context::empty());
        let session = SESSION
            .with(|s| s.borrow_mut().take())
            .expect("the session is set for the render");
        *fetched = session.fetched;
        match (out, session.missing) {
            (_, missing) if !missing.is_empty() => Rendered::Needs(missing),
            (Ok(text), _) => Rendered::Done(Zeroizing::new(text), session.used),
            (Err(e), _) => Rendered::Failed(redacted(&e)),
        }
    }
}

/// A render error as a message that holds no secret: gtmpl prints the value a `range` could
/// not walk, and the map a field was missing from, which are secret data here.
fn redacted(e: &gtmpl::error::ExecError) -> String {
    use gtmpl::error::ExecError;
    match e {
        ExecError::InvalidRange(_) => "range over a value that is neither a list nor a map".into(),
        ExecError::NoFiledFor(field, _) => format!("no field {field}"),
        other => other.to_string(),
    }
}

/// Refuses a template with an action that is never closed (`{{` without a later `}}`):
/// gtmpl's parser does not return on one.
fn check_actions_close(text: &str) -> Result<(), String> {
    let mut rest = text;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        line += rest[..open].matches('\n').count();
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("line {line}: an action opened with {{{{ is never closed"))?;
        if let Some(next) = after[..close].find("{{") {
            let at = line + after[..next].matches('\n').count();
            return Err(format!(
                "line {at}: an action opens before the one on line {line} is closed"
            ));
        }
        line += after[..close].matches('\n').count();
        rest = &after[close + 2..];
    }
    Ok(())
}

/// Renders `template`, fetching each dependency it asks for and does not find in `fetched`
/// through `fetch` (which adds nothing on failure), until none is missing: the output, and
/// every dependency the final render read.
pub async fn render_fetching<F, Fut>(
    template: &Template,
    fetched: &mut Fetched,
    mut fetch: F,
) -> Result<(Zeroizing<String>, BTreeSet<Dep>), String>
where
    F: FnMut(Dep) -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    // Each round fetches at least one new dependency; a template that keeps asking for new
    // ones (a path built from a secret that changes every read) is cut off.
    for _ in 0..64 {
        match template.render_once(fetched) {
            Rendered::Done(text, used) => return Ok((text, used)),
            Rendered::Failed(e) => return Err(e),
            Rendered::Needs(deps) => {
                for dep in deps {
                    if fetched.contains_key(&dep) {
                        continue;
                    }
                    let what = format!("{} {:?}", dep.path, dep.kind);
                    let answer = fetch(dep.clone())
                        .await
                        .map_err(|e| format!("{what}: {e}"))?;
                    fetched.insert(dep, answer);
                }
            }
        }
    }
    Err("the template kept asking for new secrets".into())
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, synced, then
/// renamed over it) with `mode`; readers see the old file or the new one, never a part.
/// Returns whether the content changed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    if let Ok(old) = std::fs::read(path)
        && old == bytes
    {
        // Same content: only the mode may need setting.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the destination has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.sigil-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given at creation is masked by the umask: set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(true)
}

/// The signal a name stands for (`SIGHUP` or `HUP`, …).
pub fn signal_of(name: &str) -> Result<rustix::process::Signal, String> {
    use rustix::process::Signal;
    Ok(
        match name.trim_start_matches("SIG").to_ascii_uppercase().as_str() {
            "HUP" => Signal::HUP,
            "INT" => Signal::INT,
            "QUIT" => Signal::QUIT,
            "TERM" => Signal::TERM,
            "USR1" => Signal::USR1,
            "USR2" => Signal::USR2,
            _ => {
                return Err(format!(
                    "signal {name:?} is not one of SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2"
                ));
            }
        },
    )
}

// ---- conversions between JSON and the template engine's values ----

/// A JSON value as a template value (objects as maps: a missing key is `<no value>`).
pub fn to_template(v: &Value) -> G {
    match v {
        Value::Null => G::Nil,
        Value::Bool(b) => G::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => G::from(i),
            (_, Some(u), _) => G::from(u),
            (_, _, Some(f)) => G::from(f),
            _ => G::Nil,
        },
        Value::String(s) => G::String(s.clone()),
        Value::Array(a) => G::Array(a.iter().map(to_template).collect()),
        Value::Object(o) => G::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_template(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A template value as JSON (for `toJSON`).
fn to_json_value(v: &G) -> Value {
    match v {
        G::NoValue | G::Nil | G::Function(_) => Value::Null,
        G::Bool(b) => Value::Bool(*b),
        G::String(s) => Value::String(s.clone()),
        G::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(Value::Null),
        G::Array(a) => Value::Array(a.iter().map(to_json_value).collect()),
        G::Object(o) | G::Map(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

fn string_arg(args: &[G], i: usize, func: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(G::String(s)) => Ok(s.clone()),
        Some(_) => Err(FuncError::Generic(format!(
            "{func}: argument {} must be a string",
            i + 1
        ))),
        None => Err(FuncError::AtLeastXArgs(func.into(), i + 1)),
    }
}

fn dep_of(kind: DepKind, args: &[G], func: &str) -> Result<Dep, FuncError> {
    let path = string_arg(args, 0, func)?;
    let mut pairs = Vec::new();
    for i in 1..args.len() {
        let arg = string_arg(args, i, func)?;
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| FuncError::Generic(format!("{func}: {arg:?} is not key=value")))?;
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok(Dep {
        kind,
        path: path.trim_start_matches('/').to_owned(),
        args: pairs,
    })
}

/// Looks `dep` up in the render's session: its answer, or `None` (noted as missing).
fn look_up(dep: Dep) -> Result<Option<Value>, FuncError> {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let s = s
            .as_mut()
            .ok_or_else(|| FuncError::Generic("no render in progress".into()))?;
        s.used.insert(dep.clone());
        Ok(match s.fetched.get(&dep) {
            Some(v) => Some(v.clone()),
            None => {
                s.missing.push(dep);
                None
            }
        })
    })
}

fn map(pairs: Vec<(&str, G)>) -> G {
    G::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `secret "path" ["k=v" …]`: Vault Agent's secret: `.Data`, `.LeaseID`, `.LeaseDuration`,
/// `.Renewable`, `.Warnings`.
fn secret(args: &[G]) -> Result<G, FuncError> {
    let body = look_up(dep_of(DepKind::Secret, args, "secret")?)?.unwrap_or(Value::Null);
    Ok(map(vec![
        ("Data", to_template(&body["data"])),
        ("LeaseID", to_template(&body["lease_id"])),
        ("LeaseDuration", to_template(&body["lease_duration"])),
        ("Renewable", to_template(&body["renewable"])),
        ("Warnings", to_template(&body["warnings"])),
    ]))
}

/// `pkiCert "pki/issue/role" "common_name=…"`: `.Cert`, `.Key`, `.CA`, `.Data`.
fn pki_cert(args: &[G]) -> Result<G, FuncError> {
    let body = look_up(dep_of(DepKind::PkiCert, args, "pkiCert")?)?.unwrap_or(Value::Null);
    let data = &body["data"];
    Ok(map(vec![
        ("Cert", to_template(&data["certificate"])),
        ("Key", to_template(&data["private_key"])),
        ("CA", to_template(&data["issuing_ca"])),
        ("Data", to_template(data)),
    ]))
}

fn env(args: &[G]) -> Result<G, FuncError> {
    let name = string_arg(args, 0, "env")?;
    Ok(G::String(std::env::var(name).unwrap_or_default()))
}

fn to_json(args: &[G]) -> Result<G, FuncError> {
    let v = args
        .first()
        .ok_or(FuncError::ExactlyXArgs("toJSON".into(), 1))?;
    Ok(G::String(to_json_value(v).to_string()))
}

fn to_json_pretty(args: &[G]) -> Result<G, FuncError> {
    let v = args
        .first()
        .ok_or(FuncError::ExactlyXArgs("toJSONPretty".into(), 1))?;
    Ok(G::String(
        serde_json::to_string_pretty(&to_json_value(v)).expect("JSON serializes"),
    ))
}

fn base64_encode(args: &[G]) -> Result<G, FuncError> {
    let s = string_arg(args, 0, "base64Encode")?;
    Ok(G::String(
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
    ))
}

fn base64_decode(args: &[G]) -> Result<G, FuncError> {
    let s = string_arg(args, 0, "base64Decode")?;
    // The decoder's error names an offending byte: not repeated (the input may be a secret).
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| FuncError::Generic("base64Decode: the text is not base64".into()))?;
    String::from_utf8(bytes)
        .map(G::String)
        .map_err(|_| FuncError::Generic("base64Decode: the bytes are not UTF-8".into()))
}

fn to_upper(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(string_arg(args, 0, "toUpper")?.to_uppercase()))
}

fn to_lower(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(string_arg(args, 0, "toLower")?.to_lowercase()))
}

fn trim_space(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(
        string_arg(args, 0, "trimSpace")?.trim().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(data: Value) -> Value {
        json!({ "data": { "data": data, "metadata": { "version": 3 } }, "lease_id": "", "lease_duration": 0, "renewable": false })
    }

    async fn render(text: &str, answers: &[(&str, Value)]) -> Result<String, String> {
        let t = Template::parse("t", text)?;
        let answers: HashMap<String, Value> = answers
            .iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect();
        let mut fetched = Fetched::new();
        render_fetching(&t, &mut fetched, |dep| {
            let a = answers.get(&dep.path).cloned();
            async move { a.ok_or_else(|| "403 permission denied".to_string()) }
        })
        .await
        .map(|(s, _)| s.to_string())
    }

    #[tokio::test]
    async fn vault_agent_templates_render() {
        let app = kv(json!({ "password": "s3cret", "user": "app" }));
        let out = render(
            r#"{{ with secret "secret/data/app" }}pw={{ .Data.data.password }} v={{ .Data.metadata.version }}{{ end }}"#,
            &[("secret/data/app", app.clone())],
        )
        .await
        .unwrap();
        assert_eq!(out, "pw=s3cret v=3");
        let out = render(
            r#"{{ with secret "secret/data/app" }}{{ index .Data.data "user" }} {{ base64Encode .Data.data.password }} {{ toJSON .Data.data }}{{ end }}"#,
            &[("secret/data/app", app.clone())],
        )
        .await
        .unwrap();
        assert_eq!(out, r#"app czNjcmV0 {"password":"s3cret","user":"app"}"#);
        let out = render(
            r#"{{ with secret "secret/data/one" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }};{{ end }}{{ end }}"#,
            &[("secret/data/one", kv(json!({ "only": "1" })))],
        )
        .await
        .unwrap();
        assert_eq!(out, "only=1;");
    }

    #[tokio::test]
    async fn secrets_nested_in_secrets_are_fetched_in_rounds() {
        let out = render(
            r#"{{ with secret "secret/data/which" }}{{ with secret .Data.data.path }}{{ .Data.data.v }}{{ end }}{{ end }}"#,
            &[
                ("secret/data/which", kv(json!({ "path": "secret/data/other" }))),
                ("secret/data/other", kv(json!({ "v": "deep" }))),
            ],
        )
        .await
        .unwrap();
        assert_eq!(out, "deep");
    }

    #[tokio::test]
    async fn writes_with_arguments_and_pki_certificates() {
        let t = Template::parse(
            "t",
            r#"{{ with pkiCert "pki/issue/web" "common_name=a.example.com" "ttl=1h" }}{{ .Cert }}|{{ .Key }}|{{ .CA }}{{ end }}"#,
        )
        .unwrap();
        let mut fetched = Fetched::new();
        let (out, used) = render_fetching(&t, &mut fetched, |dep| async move {
            assert_eq!(dep.kind, DepKind::PkiCert);
            assert_eq!(
                dep.request(),
                (
                    "POST",
                    Some(json!({ "common_name": "a.example.com", "ttl": "1h" }))
                )
            );
            Ok(json!({ "data": { "certificate": "C", "private_key": "K", "issuing_ca": "A" } }))
        })
        .await
        .unwrap();
        assert_eq!(&*out, "C|K|A");
        assert_eq!(used.len(), 1);
    }

    #[tokio::test]
    async fn a_denied_secret_or_a_broken_template_is_an_error() {
        let err = render(
            r#"{{ with secret "secret/data/no" }}{{ .Data }}{{ end }}"#,
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("secret/data/no") && err.contains("403"),
            "{err}"
        );
        assert!(Template::parse("t", "{{ with secret \"x\" }}").is_err());
        let err = render(r#"{{ secret "a" "novalue" }}"#, &[])
            .await
            .unwrap_err();
        assert!(err.contains("key=value"), "{err}");
        let err = render(r#"{{ nosuchfunc "a" }}"#, &[]).await.unwrap_err();
        assert!(!err.is_empty());
    }

    #[tokio::test]
    async fn render_errors_and_debug_output_hold_no_secret() {
        let secret = kv(json!({ "password": "hunter2-secret", "blob": "%%not-base64-secret%%" }));
        for text in [
            r#"{{ with secret "secret/data/s" }}{{ range .Data.data.password }}{{ end }}{{ end }}"#,
            r#"{{ with secret "secret/data/s" }}{{ base64Decode .Data.data.blob }}{{ end }}"#,
        ] {
            let err = render(text, &[("secret/data/s", secret.clone())])
                .await
                .unwrap_err();
            assert!(
                !err.contains("hunter2") && !err.contains("secret%%"),
                "{err}"
            );
        }
        let dep = Dep {
            kind: DepKind::Secret,
            path: "transit/encrypt/k".into(),
            args: vec![("plaintext".into(), "aHVudGVyMg==".into())],
        };
        let shown = format!("{dep:?}");
        assert!(
            shown.contains("plaintext") && !shown.contains("aHVudGVyMg"),
            "{shown}"
        );
    }

    /// Malformed templates are refused quickly (each parse on its own thread, with a deadline:
    /// a parser that does not return fails the test instead of hanging it).
    #[test]
    fn malformed_templates_are_refused_without_hanging() {
        for text in [
            "{{",
            "{{ ",
            "{{ with secret ",
            "a {{ .x",
            "{{ \"",
            "{{ (",
            "{{ range $k, $v := ",
            "{{/*",
            "{{- ",
            "{{ 1 |",
            "{{ .a }} {{ .b",
            "{{ .a {{ .b }}",
            "{{ with secret \"x\" }}",
            "{{ end }}",
            "{{ $x := }}",
        ] {
            let (tx, rx) = std::sync::mpsc::channel();
            let owned = text.to_owned();
            std::thread::spawn(move || {
                let _ = tx.send(Template::parse("t", &owned).is_err());
            });
            let refused = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("parsing {text:?} did not return"));
            assert!(refused, "{text:?} was accepted");
        }
    }

    #[test]
    fn files_are_replaced_whole_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        assert!(write_atomic(&p, b"one", 0o600).unwrap());
        assert!(!write_atomic(&p, b"one", 0o600).unwrap(), "unchanged");
        assert!(write_atomic(&p, b"two", 0o640).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}
