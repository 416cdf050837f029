//! `key=value` arguments as Vault's CLI reads them: `k=v`, `k=@file`, `k=-` (standard input),
//! `@file.json` for a whole object.

/// `KEY=VALUE` flag values (`--metadata`, `-custom-metadata`) as a map of strings.
pub(crate) fn string_pairs(
    flag: &str,
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.into())),
            None => Err(anyhow::anyhow!("{flag} {pair:?} is not KEY=VALUE")),
        })
        .collect()
}

/// `key=value` pairs into a JSON object, as Vault's CLI reads them:
///
/// - `key=@FILE` reads the value from a file, `key=-` from standard input (as it is, a final
///   newline included: `echo -n` or `printf` leave none);
/// - a lone `@FILE` or `-` is a JSON object (from the file, or from standard input) whose
///   members are added with their JSON types.
///
/// Standard input is read once: by one `key=-` or one `-`. When it is a terminal, `-` is an
/// error rather than a prompt or a literal `-`. A key given twice takes the later value.
pub(crate) fn parse_pairs(
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    parse_pairs_from(pairs, &mut Stdin::default())
}

/// Standard input, read at most once.
#[derive(Default)]
pub(crate) struct Stdin {
    used_by: Option<String>,
    /// For tests: what "standard input" holds (`None`: the process's).
    fake: Option<Vec<u8>>,
}

impl Stdin {
    fn read(&mut self, by: &str) -> anyhow::Result<Vec<u8>> {
        use std::io::{IsTerminal as _, Read as _};
        if let Some(first) = &self.used_by {
            anyhow::bail!("{by} reads standard input, which {first} already read");
        }
        self.used_by = Some(by.to_owned());
        if let Some(fake) = self.fake.take() {
            return Ok(fake);
        }
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            anyhow::bail!(
                "{by} reads standard input, which is a terminal: pipe the value in (printf %s \"$VALUE\" | sigil …), or use @FILE"
            );
        }
        let mut out = Vec::new();
        stdin.lock().read_to_end(&mut out)?;
        Ok(out)
    }
}

fn parse_pairs_from(
    pairs: &[String],
    stdin: &mut Stdin,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use anyhow::{Context as _, bail};
    let object = |bytes: &[u8], from: &str| -> anyhow::Result<serde_json::Map<_, _>> {
        match serde_json::from_slice(bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => bail!("{from} holds JSON, but not an object ({{\"key\": \"value\", …}})"),
            Err(e) => bail!("{from} is not a JSON object: {e}"),
        }
    };
    let mut data = serde_json::Map::new();
    for pair in pairs {
        if pair == "-" {
            data.extend(object(&stdin.read("-")?, "standard input")?);
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            if let Some(file) = pair.strip_prefix('@') {
                let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
                data.extend(object(&bytes, file)?);
                continue;
            }
            bail!("{pair:?} is not key=value (or @FILE, or - for a JSON object on standard input)");
        };
        if k.is_empty() {
            bail!("{pair:?} has an empty key");
        }
        let bytes = if v == "-" {
            let bytes = stdin.read(&format!("{k}=-"))?;
            if bytes.is_empty() {
                bail!("{k}=- read nothing from standard input (for an empty value, write {k}=)");
            }
            bytes
        } else if let Some(file) = v.strip_prefix('@') {
            std::fs::read(file).with_context(|| format!("cannot read {file}"))?
        } else {
            v.as_bytes().to_vec()
        };
        let value = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("the value of {k} is not UTF-8 text"))?;
        data.insert(k.to_owned(), serde_json::Value::String(value));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[&str], stdin: Option<&str>) -> anyhow::Result<serde_json::Value> {
        let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        let mut input = Stdin {
            used_by: None,
            fake: stdin.map(|s| s.as_bytes().to_vec()),
        };
        parse_pairs_from(&pairs, &mut input).map(serde_json::Value::Object)
    }

    #[test]
    fn values_come_from_arguments_files_and_standard_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v");
        std::fs::write(&file, "from-file\n").unwrap();
        let json = dir.path().join("d.json");
        std::fs::write(&json, r#"{"n": 3, "b": true}"#).unwrap();
        let at = format!("f=@{}", file.display());
        let obj = format!("@{}", json.display());
        assert_eq!(
            parse(&["a=1", &at, "s=-", &obj], Some("s3cr3t")).unwrap(),
            serde_json::json!({"a": "1", "f": "from-file\n", "s": "s3cr3t", "n": 3, "b": true})
        );
        assert_eq!(
            parse(&["-", "a=2"], Some(r#"{"a": "1", "x": [1]}"#)).unwrap(),
            serde_json::json!({"a": "2", "x": [1]})
        );
    }

    #[test]
    fn fail_ambiguous_or_malformed() {
        for (pairs, stdin, needle) in [
            (&["a=-", "b=-"][..], Some("x"), "already read"),
            (&["-", "b=-"][..], Some("{}"), "already read"),
            (&["-"][..], Some("[1]"), "not an object"),
            (&["-"][..], Some("nope"), "not a JSON object"),
            (&["novalue"][..], None, "is not key=value"),
            (&["=v"][..], None, "empty key"),
            (&["a=-"][..], Some(""), "read nothing"),
            (&["a=@/nonexistent/file"][..], None, "cannot read"),
        ] {
            let e = parse(pairs, stdin).unwrap_err();
            assert!(e.to_string().contains(needle), "{pairs:?}: {e}");
        }
    }
}
