//! `sigil csi-provider`: a provider for the Kubernetes Secrets Store CSI driver. The driver
//! calls `v1alpha1.CSIDriverProvider` (`Version`, `Mount`) over gRPC on a Unix socket; `Mount`
//! reads each object of the `SecretProviderClass` from Sigil and returns the files' contents,
//! modes and object versions. The provider writes nothing to disk: the driver does.
//!
//! The messages below are the driver's `provider/v1alpha1/service.proto` (release v1.6.0),
//! field for field, with prost's derive instead of generated code.
//!
//! `SecretProviderClass` parameters, in the style of Vault's provider:
//!
//! ```yaml
//! parameters:
//!   roleName: "app"               # accepted; authentication is the provider's key for now
//!   objects: |
//!     - objectName: "db-password"  # the file's path in the volume
//!       secretPath: "secret/data/db"
//!       secretKey: "password"      # a field of the secret's data (KV v2: of data.data)
//!       filePermission: "0600"     # optional; else the driver's permission
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use sigil_client::{Client, ClientError};
use tonic::Status;
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService};
use tonic_prost::ProstCodec;

/// `VersionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    /// The driver's version.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// `VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    /// The driver's version, echoed.
    #[prost(string, tag = "1")]
    pub version: String,
    /// This provider's name.
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// This provider's version (semver).
    #[prost(string, tag = "3")]
    pub runtime_version: String,
}

/// `MountRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MountRequest {
    /// The `SecretProviderClass` parameters (and the driver's pod attributes), JSON.
    #[prost(string, tag = "1")]
    pub attributes: String,
    /// The `nodePublishSecretRef` secret's data, JSON.
    #[prost(string, tag = "2")]
    pub secrets: String,
    /// Where the driver mounts the volume (not written by this provider).
    #[prost(string, tag = "3")]
    pub target_path: String,
    /// The files' mode, JSON (a decimal number).
    #[prost(string, tag = "4")]
    pub permission: String,
    /// The objects mounted now and their versions.
    #[prost(message, repeated, tag = "5")]
    pub current_object_version: Vec<ObjectVersion>,
}

/// `MountResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MountResponse {
    /// Each object's version.
    #[prost(message, repeated, tag = "1")]
    pub object_version: Vec<ObjectVersion>,
    /// An error code for the driver's metrics.
    #[prost(message, optional, tag = "2")]
    pub error: Option<MountError>,
    /// The volume's files.
    #[prost(message, repeated, tag = "3")]
    pub files: Vec<File>,
}

/// `File`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct File {
    /// Relative path in the volume.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Mode bits, 0–511.
    #[prost(int32, tag = "2")]
    pub mode: i32,
    /// Contents.
    #[prost(bytes = "vec", tag = "3")]
    pub contents: Vec<u8>,
}

/// `ObjectVersion`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ObjectVersion {
    /// The object's id (its `objectName`).
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its version (KV: the secret's version; a dynamic secret: its lease).
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `Error`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MountError {
    /// The code.
    #[prost(string, tag = "1")]
    pub code: String,
}

/// One entry of the `objects` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The file's path in the volume.
    pub object_name: String,
    /// The API path to read.
    pub secret_path: String,
    /// The field of the secret's data; empty: the whole data as JSON.
    pub secret_key: String,
    /// The file's mode, when the object sets one.
    pub file_permission: Option<u32>,
}

/// The provider: reads objects as `client`'s identity.
#[derive(Clone)]
pub struct Provider {
    client: Arc<Client>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

/// Parses the `objects` parameter: a YAML list of flat maps as Vault's provider takes it (the
/// subset its examples use: `- key: value` items with plain or quoted scalars), or a JSON
/// array of objects.
pub fn parse_objects(text: &str) -> Result<Vec<Object>, String> {
    let maps: Vec<HashMap<String, String>> = if text.trim_start().starts_with('[') {
        let items: Vec<HashMap<String, Value>> =
            serde_json::from_str(text).map_err(|e| format!("objects: {e}"))?;
        items
            .into_iter()
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k, s)),
                        other => Err(format!("objects: {k} must be a string, not {other}")),
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?
    } else {
        let mut maps: Vec<HashMap<String, String>> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let body = match line.trim_start().strip_prefix("- ") {
                Some(rest) => {
                    maps.push(HashMap::new());
                    rest
                }
                None => line.trim_start(),
            };
            let (k, v) = body
                .split_once(':')
                .ok_or_else(|| format!("objects line {}: not `key: value`", i + 1))?;
            let map = maps
                .last_mut()
                .ok_or_else(|| format!("objects line {}: an item starts with `- `", i + 1))?;
            if v.trim().is_empty() {
                return Err(format!(
                    "objects line {}: {} has no value (nested values such as secretArgs are not supported)",
                    i + 1,
                    k.trim()
                ));
            }
            map.insert(k.trim().to_owned(), crate::reference::unquote(v).to_owned());
        }
        maps
    };
    let mut objects = Vec::new();
    for (i, mut m) in maps.into_iter().enumerate() {
        let n = i + 1;
        let mut take = |k: &str| m.remove(k);
        let object_name = take("objectName").ok_or(format!("object {n}: objectName is missing"))?;
        check_file_path(&object_name).map_err(|e| format!("object {n}: {e}"))?;
        let secret_path = take("secretPath").ok_or(format!("object {n}: secretPath is missing"))?;
        let secret_key = take("secretKey").unwrap_or_default();
        let file_permission = take("filePermission")
            .map(|p| crate::config::parse_mode(&p))
            .transpose()
            .map_err(|e| format!("object {n}: {e}"))?;
        if let Some(k) = m.keys().next() {
            return Err(format!("object {n}: {k} is not supported"));
        }
        objects.push(Object {
            object_name,
            secret_path: secret_path.trim_start_matches('/').to_owned(),
            secret_key,
            file_permission,
        });
    }
    if objects.is_empty() {
        return Err("objects: no object".into());
    }
    Ok(objects)
}

/// A path in the volume as the driver allows it: relative, no `..`.
fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty()
        || path.starts_with('/')
        || path.starts_with("..")
        || path.split('/').any(|seg| seg == ".." || seg.is_empty())
    {
        return Err(format!(
            "objectName {path:?} must be a relative path without `..`"
        ));
    }
    Ok(())
}

fn status_of(object: &Object, e: ClientError) -> Status {
    let what = format!("{}: {}: {e}", object.object_name, object.secret_path);
    match e.status() {
        Some(401 | 403) => Status::permission_denied(what),
        Some(404) => Status::not_found(what),
        Some(400) => Status::invalid_argument(what),
        _ => Status::unavailable(what),
    }
}

impl Provider {
    /// A provider reading as `client`.
    pub fn new(client: Arc<Client>) -> Provider {
        Provider { client }
    }

    fn version(req: VersionRequest) -> VersionResponse {
        VersionResponse {
            version: req.version,
            runtime_name: "sigil".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Reads every object; any failure fails the mount (the driver retries it).
    pub async fn mount(&self, req: MountRequest) -> Result<MountResponse, Status> {
        let attributes: HashMap<String, Value> = serde_json::from_str(&req.attributes)
            .map_err(|e| Status::invalid_argument(format!("attributes: {e}")))?;
        let objects = attributes
            .get("objects")
            .and_then(Value::as_str)
            .ok_or_else(|| Status::invalid_argument("the objects parameter is missing"))
            .and_then(|t| parse_objects(t).map_err(Status::invalid_argument))?;
        let attribute = |k: &str| attributes.get(k).and_then(Value::as_str).unwrap_or("");
        tracing::info!(
            role = attribute("roleName"),
            pod = attribute("csi.storage.k8s.io/pod.name"),
            namespace = attribute("csi.storage.k8s.io/pod.namespace"),
            objects = objects.len(),
            "mount (roleName is not used yet: objects are read as the provider's identity)"
        );
        let default_mode: u32 = match req.permission.trim() {
            "" => 0o644,
            p => p
                .parse()
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| Status::invalid_argument(format!("permission {p:?}")))?,
        };
        let mut out = MountResponse::default();
        for object in &objects {
            let answer = self
                .client
                .request("GET", &object.secret_path, None)
                .await
                .map_err(|e| status_of(object, e))?;
            let body = answer.body.unwrap_or(Value::Null);
            let kv2 = body["mount_type"] == "kv" && body["data"]["data"].is_object();
            let data = if kv2 {
                &body["data"]["data"]
            } else {
                &body["data"]
            };
            let contents = match object.secret_key.as_str() {
                "" => serde_json::to_vec(data).expect("JSON serializes"),
                key => crate::reference::field_text(data, key)
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "{}: {}: no field {key:?}",
                            object.object_name, object.secret_path
                        ))
                    })?
                    .into_bytes(),
            };
            let version = match (kv2, body["lease_id"].as_str()) {
                (true, _) => body["data"]["metadata"]["version"].to_string(),
                (false, Some(lease)) if !lease.is_empty() => lease.to_owned(),
                _ => "0".into(),
            };
            let mode = object.file_permission.unwrap_or(default_mode);
            out.files.push(File {
                path: object.object_name.clone(),
                mode: mode as i32,
                contents,
            });
            out.object_version.push(ObjectVersion {
                id: object.object_name.clone(),
                version,
            });
        }
        Ok(out)
    }
}

impl NamedService for Provider {
    const NAME: &'static str = "v1alpha1.CSIDriverProvider";
}

impl<B> Service<http::Request<B>> for Provider
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let provider = self.clone();
        match req.uri().path() {
            "/v1alpha1.CSIDriverProvider/Version" => Box::pin(async move {
                let svc = tower::service_fn(|r: tonic::Request<VersionRequest>| async move {
                    Ok::<_, Status>(tonic::Response::new(Provider::version(r.into_inner())))
                });
                Ok(Grpc::new(ProstCodec::default()).unary(svc, req).await)
            }),
            "/v1alpha1.CSIDriverProvider/Mount" => Box::pin(async move {
                let svc = tower::service_fn(move |r: tonic::Request<MountRequest>| {
                    let provider = provider.clone();
                    async move {
                        provider
                            .mount(r.into_inner())
                            .await
                            .map(tonic::Response::new)
                    }
                });
                Ok(Grpc::new(ProstCodec::default()).unary(svc, req).await)
            }),
            other => {
                let status =
                    Status::unimplemented(format!("{other} is not a method of this provider"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Serves the provider on `socket` (created 0600; a stale socket replaced) until `shutdown`.
pub async fn serve(
    client: Arc<Client>,
    socket: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listen = crate::config::Listen::Unix(socket.to_owned());
    let crate::listen::Bound::Unix(listener, path) = crate::listen::bind(&listen).await? else {
        unreachable!("a Unix socket binds as one");
    };
    let served = tonic::transport::Server::builder()
        .add_service(Provider::new(client))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_file(path);
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_as_vaults_provider_writes_them() {
        let yaml = r#"
- objectName: "db-password"
  secretPath: "secret/data/db"
  secretKey: "password"
# a comment
- objectName: config/app.json
  secretPath: /secret/data/app
  filePermission: '0600'
"#;
        let objects = parse_objects(yaml).unwrap();
        assert_eq!(
            objects,
            [
                Object {
                    object_name: "db-password".into(),
                    secret_path: "secret/data/db".into(),
                    secret_key: "password".into(),
                    file_permission: None,
                },
                Object {
                    object_name: "config/app.json".into(),
                    secret_path: "secret/data/app".into(),
                    secret_key: String::new(),
                    file_permission: Some(0o600),
                }
            ]
        );
        let json = r#"[{"objectName": "a", "secretPath": "secret/data/a", "secretKey": "k"}]"#;
        assert_eq!(parse_objects(json).unwrap()[0].secret_key, "k");
    }

    #[test]
    fn bad_objects_are_refused_with_a_reason() {
        for (text, want) in [
            ("", "no object"),
            ("- secretPath: a", "objectName is missing"),
            ("- objectName: a", "secretPath is missing"),
            ("- objectName: /etc/passwd\n  secretPath: s", "relative"),
            ("- objectName: ../x\n  secretPath: s", "relative"),
            ("- objectName: a/../../x\n  secretPath: s", "relative"),
            (
                "- objectName: a\n  secretPath: s\n  method: POST",
                "not supported",
            ),
            (
                "- objectName: a\n  secretPath: s\n  secretArgs:\n    x: y",
                "nested values",
            ),
            ("objectName: a", "starts with"),
            ("- objectName a", "key: value"),
            (
                "- objectName: a\n  secretPath: s\n  filePermission: rw",
                "octal",
            ),
            ("[{\"objectName\": 1}]", "must be a string"),
            ("[", "objects"),
        ] {
            let err = parse_objects(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
