use serde_json::Value;

/// What a request does, in Vault's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// GET.
    Read,
    /// LIST, or GET with `?list=true`.
    List,
    /// POST/PUT on a path that does not exist yet.
    Create,
    /// POST/PUT on a path that exists.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Operation {
    /// Its name in lower case, as the audit log and Vault write it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
        }
    }
}

/// An authenticated logical request: the path below `/v1/`, already normalized. Its `Debug`
/// omits the body, which may hold secrets.
#[derive(Clone)]
pub struct Request {
    /// The operation (Create vs Update is decided by the core's existence check; callers pass
    /// `Update` for every write).
    pub operation: Operation,
    /// The path, no leading `/`; a list path ends in `/`.
    pub path: String,
    /// The request's JSON body, if any.
    pub data: Option<Value>,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A query parameter's value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A successful response: an HTTP status and an optional JSON `data` object, which the server
/// wraps in Vault's response envelope. Its `Debug` omits `data`.
#[derive(Clone, PartialEq)]
pub struct Response {
    /// 200 or 204.
    pub status: u16,
    /// The `data` member of Vault's envelope.
    pub data: Option<Value>,
    /// The `mount_type` member (e.g. `kv`), empty for system paths.
    pub mount_type: &'static str,
    /// The lease of a dynamic secret (Vault's `lease_id`, `lease_duration`, `renewable`).
    pub lease: Option<LeaseInfo>,
    /// Vault's `warnings`.
    pub warnings: Vec<String>,
}

/// The lease a response's secret comes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id (no authority: renewing or revoking it takes a signed request).
    pub id: String,
    /// Seconds until it expires.
    pub duration: u64,
    /// Whether it can be renewed.
    pub renewable: bool,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("mount_type", &self.mount_type)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// 200 with `data`.
    pub fn data(data: Value) -> Self {
        Response {
            status: 200,
            data: Some(data),
            mount_type: "",
            lease: None,
            warnings: Vec::new(),
        }
    }

    /// 204, no body.
    pub fn no_content() -> Self {
        Response {
            status: 204,
            data: None,
            mount_type: "",
            lease: None,
            warnings: Vec::new(),
        }
    }

    /// The same response, labelled with its mount type.
    pub fn with_mount_type(mut self, mount_type: &'static str) -> Self {
        self.mount_type = mount_type;
        self
    }
}

/// `{"keys":[…]}`, 404 when empty (as Vault).
pub fn list_response(keys: Vec<String>) -> Result<Response, crate::CoreError> {
    if keys.is_empty() {
        return Err(crate::CoreError::NotFound(String::new()));
    }
    Ok(Response::data(serde_json::json!({ "keys": keys })))
}
