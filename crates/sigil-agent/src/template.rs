//! Templates as Vault Agent and consul-template write them (Go's text/template, by our
//! [`crate::gotemplate`]), with the functions such templates use: `secret`, `pkiCert`, `env`,
//! `toJSON`, `toJSONPretty`, `base64Encode`, `base64Decode`, `toUpper`, `toLower`,
//! `trimSpace`, beside Go's built-ins (`index`, `printf`, `eq`, …).
//!
//! Rendering never waits on the network inside the template engine: a render looks secrets
//! up in what was fetched so far and notes what it missed; [`render_fetching`] fetches what
//! was missed and renders again, until nothing is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::gotemplate::{self, Funcs};

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

/// The functions a template may call beside Go's built-ins.
const FUNCS: &[&str] = &[
    "secret",
    "pkiCert",
    "env",
    "toJSON",
    "toJSONPretty",
    "base64Encode",
    "base64Decode",
    "toUpper",
    "toLower",
    "trimSpace",
];

/// What one render reads and notes: the answers fetched so far, what it missed, what it used.
struct Session<'a> {
    fetched: &'a Fetched,
    missing: Vec<Dep>,
    used: BTreeSet<Dep>,
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    inner: gotemplate::Template,
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
        Ok(Template {
            inner: gotemplate::Template::parse(name, text, FUNCS)?,
        })
    }

    fn render_once(&self, fetched: &Fetched) -> Rendered {
        let mut session = Session {
            fetched,
            missing: Vec::new(),
            used: BTreeSet::new(),
        };
        let out = self.inner.execute(&Value::Null, &mut session);
        match (out, session.missing) {
            (_, missing) if !missing.is_empty() => Rendered::Needs(missing),
            (Ok(text), _) => Rendered::Done(text, session.used),
            (Err(e), _) => Rendered::Failed(e),
        }
    }
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

impl Funcs for Session<'_> {
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        match name {
            "secret" => {
                let body = self.look_up(dep_of(DepKind::Secret, &args, name)?);
                Ok(json!({
                    "Data": body["data"],
                    "LeaseID": body["lease_id"],
                    "LeaseDuration": body["lease_duration"],
                    "Renewable": body["renewable"],
                    "Warnings": body["warnings"],
                }))
            }
            "pkiCert" => {
                let body = self.look_up(dep_of(DepKind::PkiCert, &args, name)?);
                let data = &body["data"];
                Ok(json!({
                    "Cert": data["certificate"],
                    "Key": data["private_key"],
                    "CA": data["issuing_ca"],
                    "Data": data,
                }))
            }
            "env" => Ok(Value::String(
                std::env::var(one_string(&args, name)?).unwrap_or_default(),
            )),
            "toJSON" => Ok(Value::String(one(&args, name)?.to_string())),
            "toJSONPretty" => Ok(Value::String(
                serde_json::to_string_pretty(one(&args, name)?).expect("JSON serializes"),
            )),
            "base64Encode" => Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(one_string(&args, name)?),
            )),
            "base64Decode" => {
                // The decoder's error names an offending byte: not repeated (the input may be
                // a secret).
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(one_string(&args, name)?.trim())
                    .map_err(|_| "base64Decode: the text is not base64".to_owned())?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| "base64Decode: the bytes are not UTF-8".to_owned())
            }
            "toUpper" => Ok(Value::String(one_string(&args, name)?.to_uppercase())),
            "toLower" => Ok(Value::String(one_string(&args, name)?.to_lowercase())),
            "trimSpace" => Ok(Value::String(one_string(&args, name)?.trim().to_owned())),
            other => Err(format!("{other}: no such function")),
        }
    }
}

impl Session<'_> {
    /// `dep`'s answer, or null (noted as missing: fetched before the next render).
    fn look_up(&mut self, dep: Dep) -> Value {
        self.used.insert(dep.clone());
        match self.fetched.get(&dep) {
            Some(v) => v.clone(),
            None => {
                self.missing.push(dep);
                Value::Null
            }
        }
    }
}

/// The one argument of `func`.
fn one<'a>(args: &'a [Value], func: &str) -> Result<&'a Value, String> {
    match args {
        [v] => Ok(v),
        _ => Err(format!("{func}: wants 1 argument, got {}", args.len())),
    }
}

/// The one argument of `func`, a string.
fn one_string<'a>(args: &'a [Value], func: &str) -> Result<&'a str, String> {
    one(args, func)?
        .as_str()
        .ok_or_else(|| format!("{func}: the argument must be a string"))
}

/// `func "path" ["k=v" …]` as a dependency.
fn dep_of(kind: DepKind, args: &[Value], func: &str) -> Result<Dep, String> {
    let mut strings = args.iter().enumerate().map(|(i, a)| {
        a.as_str()
            .ok_or_else(|| format!("{func}: argument {} must be a string", i + 1))
    });
    let path = strings
        .next()
        .ok_or_else(|| format!("{func}: wants a path"))??;
    let mut pairs = Vec::new();
    for arg in strings {
        // The argument is not repeated: it may hold a secret (`"plaintext=…"`).
        let (k, v) = arg?
            .split_once('=')
            .ok_or_else(|| format!("{func}: an argument after the path is not key=value"))?;
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok(Dep {
        kind,
        path: path.trim_start_matches('/').to_owned(),
        args: pairs,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
            r#"{{ with secret "secret/data/env" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }};{{ end }}{{ end }}"#,
            &[(
                "secret/data/env",
                kv(json!({ "ZED": "z", "ALPHA": "a", "MIDDLE": "m", "BETA": "b" })),
            )],
        )
        .await
        .unwrap();
        // In key order, every time (a re-render must not change the file for nothing).
        assert_eq!(out, "ALPHA=a;BETA=b;MIDDLE=m;ZED=z;");
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
