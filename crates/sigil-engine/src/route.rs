//! An engine's routes: the one place its paths are written. The core matches a request's
//! path below the mount against the table once ([`find`]); the router, the policy's
//! existence check, the metrics label, whether a request may write, whether it is a public
//! read and the OpenAPI document all read the route that matched, and the engine dispatches
//! on it ([`Matched`]) instead of parsing the path again.
//!
//! A template is `{mount}` followed by `/`-separated segments: a literal segment matches
//! itself, `{name}` (any name) matches one non-empty segment, and `{path}` as the last segment
//! matches the rest of the path, slashes included, possibly empty (a KV secret's path, or the
//! folder a LIST names). A LIST's path ends in `/`; the other segments match without it.

use crate::Operation;

/// Which requests to a route may write to storage (and so wait on an fsync): the server runs
/// the others on its async workers instead of a blocking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Creates, updates, patches and deletes; reads and lists do not.
    Changes,
    /// Only a create (what the route names is made: transit's encrypt makes its key); an
    /// update only reads (a cryptographic operation on an existing key).
    OnCreate,
    /// Reads too (PKI's CRL reads re-sign a CRL that is due).
    AlsoReads,
    /// Everything, lists included (the database engine waits on a database for all of it).
    Always,
}

impl Writes {
    /// Whether `op` may write.
    pub fn may_write(self, op: Operation) -> bool {
        match (self, op) {
            (Writes::Always, _) => true,
            (Writes::AlsoReads, Operation::List) => false,
            (Writes::AlsoReads, _) => true,
            (Writes::OnCreate, op) => op == Operation::Create,
            (Writes::Changes, op) => !matches!(op, Operation::Read | Operation::List),
        }
    }
}

/// One endpoint of an engine, below its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The path template with the mount: `{mount}/keys/{name}/rotate`.
    pub path: &'static str,
    /// HTTP methods (`LIST` for Vault's LIST).
    pub methods: &'static [&'static str],
    /// What it does, for people (the OpenAPI document's summary).
    pub summary: &'static str,
    /// Read without authentication, answered raw (PKI's CA certificates and CRLs, which
    /// relying parties fetch without a key); the engine's [`Engine::is_public`] says which
    /// paths these are.
    pub public: bool,
    /// Which requests to it may write.
    pub writes: Writes,
}

impl Route {
    /// An authenticated route at `path` for `methods`, described by `summary`.
    pub const fn new(
        path: &'static str,
        methods: &'static [&'static str],
        summary: &'static str,
    ) -> Self {
        Route {
            path,
            methods,
            summary,
            public: false,
            writes: Writes::Changes,
        }
    }

    /// This route, with `writes` saying which requests to it may write.
    pub const fn writing(self, writes: Writes) -> Self {
        Route { writes, ..self }
    }

    /// A route anyone may `GET` without a key, answered raw.
    pub const fn public(path: &'static str, summary: &'static str) -> Self {
        Route {
            path,
            methods: &["GET"],
            summary,
            public: true,
            writes: Writes::Changes,
        }
    }
}

/// The most parameters a template has (`{mount}/issuer/{name}/issue/{role}` has two).
const MAX_PARAMS: usize = 3;

/// A request's path below its mount, matched to one of its engine's routes.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'r> {
    /// The route that matched.
    pub route: &'static Route,
    params: [(&'static str, &'r str); MAX_PARAMS],
    count: usize,
}

impl<'r> Matched<'r> {
    /// The value of the template's `{name}` (empty when the template has none: a route's
    /// handler asks only for the parameters its template names).
    pub fn param(&self, name: &str) -> &'r str {
        self.params[..self.count]
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }

    /// The template's parameters with their values, in the template's order.
    pub fn params(&self) -> impl Iterator<Item = (&'static str, &'r str)> + '_ {
        self.params[..self.count].iter().copied()
    }
}

/// How one segment of a template matched: a literal ranks before a parameter, a parameter
/// before the tail, so `cert/ca` wins over `cert/{name}` whatever the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Literal,
    Param,
    Tail,
}

impl Route {
    /// `rest` (a path below the mount) matched against this route's template.
    pub fn matches<'r>(&'static self, rest: &'r str) -> Option<Matched<'r>> {
        self.match_ranked(rest, |_| {})
    }

    fn match_ranked<'r>(
        &'static self,
        rest: &'r str,
        mut rank: impl FnMut(Segment),
    ) -> Option<Matched<'r>> {
        let template = self.path.strip_prefix("{mount}")?;
        let mut m = Matched {
            route: self,
            params: [("", ""); MAX_PARAMS],
            count: 0,
        };
        // What is left of `rest` to match.
        let mut left = rest;
        let mut first = true;
        let mut segments = template.split('/').skip(1).peekable();
        while let Some(segment) = segments.next() {
            let param = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            if param == Some("path") && segments.peek().is_none() {
                let tail = match left {
                    "" => "",
                    _ if first => left,
                    _ => left.strip_prefix('/')?,
                };
                rank(Segment::Tail);
                return m.with("path", tail);
            }
            if !first {
                left = left.strip_prefix('/')?;
            }
            first = false;
            let (value, after) = left.split_at(left.find('/').unwrap_or(left.len()));
            match param {
                Some(name) if !value.is_empty() => {
                    rank(Segment::Param);
                    m = m.with(name, value)?;
                }
                None if value == segment => rank(Segment::Literal),
                _ => return None,
            }
            left = after;
        }
        // A LIST's trailing `/` is left.
        matches!(left, "" | "/").then_some(m)
    }
}

impl<'r> Matched<'r> {
    fn with(mut self, name: &'static str, value: &'r str) -> Option<Self> {
        let slot = self.params.get_mut(self.count)?;
        *slot = (name, value);
        self.count += 1;
        Some(self)
    }
}

/// The answer to a path no route matches.
pub fn no_route(path: &str) -> crate::CoreError {
    crate::CoreError::NotFound(format!("no handler for route \"{path}\""))
}

/// The route of `routes` that `rest` (a path below the mount) falls under: of those that
/// match, the one with a literal segment where another has a parameter.
pub fn find<'r>(routes: &'static [Route], rest: &'r str) -> Option<Matched<'r>> {
    // How each segment matched, compared segment by segment (arrays compare in order).
    let mut best: Option<([Segment; RANKED], Matched<'r>)> = None;
    for route in routes {
        let mut rank = [Segment::Literal; RANKED];
        let mut i = 0;
        let matched = route.match_ranked(rest, |s| {
            if let Some(slot) = rank.get_mut(i) {
                *slot = s;
            }
            i += 1;
        });
        if let Some(m) = matched
            && best.as_ref().is_none_or(|(b, _)| rank < *b)
        {
            best = Some((rank, m));
        }
    }
    best.map(|(_, m)| m)
}

/// How many leading segments decide between two routes that both match.
const RANKED: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        Route::new("{mount}/config", &["GET"], "config"),
        Route::new("{mount}/data/{path}", &["GET"], "data"),
        Route::new("{mount}/keys", &["LIST"], "keys"),
        Route::new("{mount}/keys/{name}", &["GET"], "a key"),
        Route::new("{mount}/keys/{name}/rotate", &["POST"], "rotate"),
        Route::new("{mount}/issuer/{name}/issue/{role}", &["POST"], "issue"),
        Route::new("{mount}/cert/{name}", &["GET"], "a cert"),
        Route::new("{mount}/cert/ca", &["GET"], "the CA"),
        Route::new("{mount}/{path}", &["GET"], "anything"),
    ];

    fn found(rest: &str) -> Option<(&'static str, Vec<&str>)> {
        let m = find(ROUTES, rest)?;
        let names = ["path", "name", "role"];
        Some((m.route.path, names.iter().map(|n| m.param(n)).collect()))
    }

    #[test]
    fn a_path_finds_its_route_and_parameters() {
        assert_eq!(found("config"), Some(("{mount}/config", vec!["", "", ""])));
        assert_eq!(
            found("data/a/b/c"),
            Some(("{mount}/data/{path}", vec!["a/b/c", "", ""]))
        );
        // A LIST's folder keeps its `/`; the folder at the top is empty.
        assert_eq!(found("data/a/").unwrap().1[0], "a/");
        assert_eq!(found("data/").unwrap().1[0], "");
        assert_eq!(found("data").unwrap().1[0], "");
        assert_eq!(found("keys/").unwrap().0, "{mount}/keys");
        assert_eq!(
            found("keys/k"),
            Some(("{mount}/keys/{name}", vec!["", "k", ""]))
        );
        assert_eq!(
            found("keys/k/rotate").unwrap().0,
            "{mount}/keys/{name}/rotate"
        );
        assert_eq!(
            found("issuer/i/issue/web"),
            Some(("{mount}/issuer/{name}/issue/{role}", vec!["", "i", "web"]))
        );
        // A literal segment wins over a parameter whatever the table's order; anything else
        // falls to the catch-all tail.
        assert_eq!(found("cert/ca").unwrap().0, "{mount}/cert/ca");
        assert_eq!(found("cert/12-ab").unwrap().0, "{mount}/cert/{name}");
        assert_eq!(
            found("keys/k/other"),
            Some(("{mount}/{path}", vec!["keys/k/other", "", ""]))
        );
        assert_eq!(found("configx").unwrap().0, "{mount}/{path}");
    }

    #[test]
    fn a_parameter_takes_one_whole_segment() {
        let routes: &'static [Route] = &ROUTES[..8];
        for rest in [
            "",
            "keys/k/",
            "keys//rotate",
            "keys/k/rotate/x",
            "config/x",
            "cert",
            "nope",
            "keysx/k",
            "issuer/i/issue",
        ] {
            let m = find(routes, rest);
            assert!(
                m.is_none() || rest == "keys/k/",
                "{rest:?} matched {:?}",
                m.map(|m| m.route.path)
            );
        }
        // A LIST of a key's folder is the key's route with its `/` (the engine decides).
        assert_eq!(
            find(routes, "keys/k/").unwrap().route.path,
            "{mount}/keys/{name}"
        );
    }

    #[test]
    fn which_operations_may_write() {
        use Operation::*;
        let all = [Read, List, Create, Update, Patch, Delete];
        let writing = |w: Writes| -> Vec<Operation> {
            all.into_iter().filter(|op| w.may_write(*op)).collect()
        };
        assert_eq!(writing(Writes::Changes), [Create, Update, Patch, Delete]);
        assert_eq!(writing(Writes::OnCreate), [Create]);
        assert_eq!(
            writing(Writes::AlsoReads),
            [Read, Create, Update, Patch, Delete]
        );
        assert_eq!(writing(Writes::Always), all);
    }
}
