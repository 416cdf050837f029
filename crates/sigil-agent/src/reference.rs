//! Secret references as `sigil run --env NAME=REF` takes them: `PATH#FIELD`, where `PATH` is
//! as `sigil kv get` takes it for a KV version 2 mount (`secret/app`: the `data/` part is
//! added) or any API path otherwise (`database/creds/app#password`).

use serde_json::Value;
use sigil_client::Client;
use zeroize::Zeroizing;

/// A parsed `PATH#FIELD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The path as written.
    pub path: String,
    /// The field of the secret's data.
    pub field: String,
}

impl Reference {
    /// Parses `PATH#FIELD`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let (path, field) = text
            .rsplit_once('#')
            .ok_or_else(|| format!("{text:?}: name a field, as in secret/app#password"))?;
        let path = path.trim_matches('/');
        if path.is_empty() || field.is_empty() {
            return Err(format!(
                "{text:?}: write PATH#FIELD, as in secret/app#password"
            ));
        }
        Ok(Reference {
            path: path.to_owned(),
            field: field.to_owned(),
        })
    }

    /// Reads the field through `client`.
    pub async fn read(&self, client: &Client) -> Result<Zeroizing<String>, String> {
        let fail = |e: sigil_client::ClientError| format!("{}: {e}", self.path);
        let mount = client
            .request(
                "GET",
                &format!("sys/internal/ui/mounts/{}", self.path),
                None,
            )
            .await
            .map_err(fail)?;
        let info = mount.data();
        let kv2 =
            info["type"] == "kv" && info["options"]["version"].as_str().is_none_or(|v| v == "2");
        let (api_path, data_at) = match (kv2, info["path"].as_str()) {
            (true, Some(mount)) => {
                let rest = self
                    .path
                    .strip_prefix(mount.trim_end_matches('/'))
                    .unwrap_or(&self.path)
                    .trim_start_matches('/');
                (format!("{}data/{rest}", mount_with_slash(mount)), "/data")
            }
            _ => (self.path.clone(), ""),
        };
        let answer = client.request("GET", &api_path, None).await.map_err(fail)?;
        let data = answer
            .data()
            .pointer(data_at)
            .ok_or_else(|| format!("{}: the answer holds no data", self.path))?;
        field_text(data, &self.field)
            .map(Zeroizing::new)
            .ok_or_else(|| format!("{}: no field {:?} in the secret", self.path, self.field))
    }
}

/// A field of a secret's data as text: a string as it is, any other value as JSON; `None`
/// when the field is missing or null.
pub(crate) fn field_text(data: &Value, field: &str) -> Option<String> {
    match data.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `v` without surrounding whitespace and one pair of matching single or double quotes.
pub(crate) fn unquote(v: &str) -> &str {
    let v = v.trim();
    ['"', '\'']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(v)
}

fn mount_with_slash(mount: &str) -> String {
    format!("{}/", mount.trim_end_matches('/'))
}

/// Parses an env file's rendered text: `NAME=value` lines (an optional `export ` before the
/// name; blank lines and `#` comments skipped; a value in single or double quotes has them
/// removed).
pub fn parse_env_lines(text: &str) -> Result<Vec<(String, Zeroizing<String>)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not NAME=value", i + 1))?;
        let name = name.trim();
        // Not echoed: a rendered line may hold part of a secret.
        check_name(name)
            .map_err(|_| format!("line {}: not an environment variable name", i + 1))?;
        let value = unquote(value);
        out.push((name.to_owned(), Zeroizing::new(value.to_owned())));
    }
    Ok(out)
}

/// An environment variable's name: a letter or `_`, then letters, digits and `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    match ok {
        true => Ok(()),
        false => Err(format!("{name:?} is not an environment variable name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_path_and_a_field() {
        assert_eq!(
            Reference::parse("secret/app#password").unwrap(),
            Reference {
                path: "secret/app".into(),
                field: "password".into()
            }
        );
        for bad in ["secret/app", "#f", "secret/app#", ""] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_are_name_value_lines() {
        let got = parse_env_lines("# comment\n\nexport A=1\nB = \"two words\"\nC='x=y'\n").unwrap();
        let got: Vec<(String, String)> = got.into_iter().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(
            got,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("C".to_string(), "x=y".to_string())
            ]
        );
        assert!(parse_env_lines("novalue").unwrap_err().contains("line 1"));
        assert!(
            parse_env_lines("1A=x")
                .unwrap_err()
                .contains("not an environment")
        );
    }
}
