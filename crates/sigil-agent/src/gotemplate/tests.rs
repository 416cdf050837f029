//! The language, case by case. The cases in `tests/interop/gotemplate/cases.json` are also
//! rendered by Go's own text/template (crates/sigil-agent/tests/go_template.rs), which must
//! give the same output and fail on the same error cases.

use serde_json::{Value, json};

use super::*;

/// Functions for the tests: `upper` and `fail`.
struct Test;

impl Funcs for Test {
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        match name {
            "upper" => Ok(Value::String(
                args.first()
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_uppercase(),
            )),
            _ => Err("it failed".into()),
        }
    }
}

fn render(text: &str, data: &Value) -> Result<String, String> {
    let t = Template::parse("t", text, &["upper", "fail"])?;
    t.execute(data, &mut Test).map(|s| s.to_string())
}

fn data() -> Value {
    json!({
        "s": "str",
        "n": 3,
        "f": 1.5,
        "t": true,
        "empty": "",
        "list": ["a", "b", "c"],
        "m": { "z": 1, "a": 2, "m": 3 },
        "nested": { "x": { "y": "deep" } },
        "nil": null,
    })
}

/// The cases Go's own text/template renders in crates/sigil-agent/tests/go_template.rs.
const CASES: &str = include_str!("../../../../tests/interop/gotemplate/cases.json");

#[derive(serde::Deserialize)]
struct Cases {
    data: Value,
    cases: Vec<(String, String)>,
    errors: Vec<String>,
}

#[test]
fn the_language_renders_as_go_renders_it() {
    let c: Cases = serde_json::from_str(CASES).unwrap();
    for (text, want) in &c.cases {
        match render(text, &c.data) {
            Ok(got) => assert_eq!(&got, want, "{text:?}"),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }
    for text in &c.errors {
        assert!(render(text, &c.data).is_err(), "{text:?} rendered");
    }
}

#[test]
fn numbers_compare_by_value_and_a_stray_pipe_is_refused() {
    // Go refuses to compare a float with an int, and JSON numbers reach Go's templates as
    // float64 (or json.Number, a string, in Vault Agent): here 3 equals 3.0.
    assert_eq!(
        render("{{ eq .n 3 }} {{ lt .f 2 }}", &data()).unwrap(),
        "true true"
    );
    // A number and a string compare by the number's text, as Vault Agent's `json.Number`
    // strings do (Go refuses `eq .s 1` for Go's own types).
    assert_eq!(
        render(
            r#"{{ eq .n "3" }} {{ eq .s 1 }} {{ ne .f "1.5" }}"#,
            &data()
        )
        .unwrap(),
        "true false false"
    );
    // Go 1.19 prints `{{ .a | }}` as if the pipe were not there; a stray pipe is refused here.
    assert!(render("{{ .a | }}", &data()).is_err());
}

#[test]
fn go_features_newer_than_the_comparison_go() {
    // Range over an integer (Go 1.22) and `else with` (Go 1.23).
    assert_eq!(
        render("{{ range 3 }}{{ . }}{{ end }}", &data()).unwrap(),
        "012"
    );
    assert_eq!(
        render(
            "{{ with .missing }}a{{ else with .s }}{{ . }}{{ end }}",
            &data()
        )
        .unwrap(),
        "str"
    );
}

#[test]
fn maps_range_in_key_order_every_time() {
    let mut big = serde_json::Map::new();
    for i in 0..200 {
        big.insert(format!("k{i:03}"), json!(i));
    }
    let d = json!({ "m": big });
    let first = render("{{ range $k, $v := .m }}{{ $k }}{{ end }}", &d).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i:03}")).collect();
    assert_eq!(first, keys.concat());
    for _ in 0..5 {
        assert_eq!(
            render("{{ range $k, $v := .m }}{{ $k }}{{ end }}", &d).unwrap(),
            first
        );
    }
}

#[test]
fn execution_errors_name_the_line_and_never_a_value() {
    let secret = json!({ "pw": "hunter2-secret", "list": ["hunter2-secret"], "m": { "k": "hunter2-secret" } });
    for (text, want) in [
        (
            "{{ range .pw }}{{ end }}",
            "range can't iterate over a string",
        ),
        (
            "\n{{ .pw.x }}",
            "line 2: can't evaluate field x in a string",
        ),
        ("{{ index .list 3 }}", "out of range"),
        ("{{ index .pw 0 }}", "can't index a string"),
        ("{{ len 3 }}", "len of a int"),
        ("{{ printf \"%d\" .pw }}", "%d of a string"),
        ("{{ eq .pw true }}", "incompatible types"),
        ("{{ lt .m .m }}", "incompatible types"),
        ("{{ fail .pw }}", "it failed"),
        ("{{ .pw 1 }}", "non-function"),
        ("{{ 1 | .pw }}", "non-function"),
        ("{{ not }}", "wants 1 argument"),
        ("{{ and }}", "at least one"),
    ] {
        let err = render(text, &secret).unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(err.starts_with("template t: line "), "{err}");
        assert!(!err.contains("hunter2"), "{text:?}: {err}");
    }
}

#[test]
fn values_made_in_variables_count_against_the_budget() {
    let err = render(
        r#"{{ $a := "0123456789abcdef" }}{{ range 40 }}{{ $a = print $a $a }}{{ end }}"#,
        &json!({}),
    )
    .unwrap_err();
    assert!(err.contains("MiB of values made"), "{err}");
    let err = render(
        r#"{{ $a := "0123456789abcdef0123456789abcdef" }}{{ range 30 }}{{ $a = print $a $a $a $a $a $a $a $a $a $a }}{{ end }}"#,
        &json!({}),
    )
    .unwrap_err();
    assert!(err.contains("MiB of values made"), "{err}");
}

#[test]
fn lines_count_the_newlines_of_trim_markers() {
    for (text, line) in [
        ("{{ .s\n-}}\n{{ .s.x }}", "line 3:"),
        ("{{-\n.s.x }}", "line 2:"),
        ("{{- /* a\n */ -}}\n{{ .s.x }}", "line 3:"),
    ] {
        let err = render(text, &data()).unwrap_err();
        assert!(err.contains(line), "{text:?}: {err}");
    }
}

#[test]
fn output_past_its_budget_stops_at_the_text_that_passed_it() {
    let text = format!("a\n{{{{ range 70 }}}}{}{{{{ end }}}}", "x".repeat(1 << 20));
    let err = render(&text, &json!({})).unwrap_err();
    assert!(err.contains("line 2: output over 64 MiB"), "{err}");
}

#[test]
fn runaway_templates_stop() {
    let err = render("{{ range 100000000 }}{{ end }}", &json!({})).unwrap_err();
    assert!(err.contains("range over more than"), "{err}");
    let err = render(
        "{{ range 9000000 }}{{ range 3 }}{{ end }}{{ end }}",
        &json!({}),
    )
    .unwrap_err();
    assert!(err.contains("steps"), "{err}");
}

#[test]
fn malformed_templates_are_refused_with_a_line() {
    for (text, want) in [
        ("{{", "never closed"),
        ("{{ ", "never closed"),
        ("a\nb {{ .x", "line 2"),
        ("{{ with .x }}", "has no {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ else }}", "unexpected {{else}}"),
        (
            "{{ if .a }}{{ else }}{{ else }}{{ end }}",
            "second {{else}}",
        ),
        ("{{ range .a }}{{ end }}{{ break }}", "outside range"),
        (
            "{{ range .a }}{{ else }}{{ continue }}{{ end }}",
            "outside range",
        ),
        ("{{ nosuch 1 }}", "function \"nosuch\" not defined"),
        ("{{ $x }}", "undefined variable $x"),
        ("{{ $x = 1 }}", "undefined variable $x"),
        (
            "{{ if .a }}{{ $y := 1 }}{{ end }}{{ $y }}",
            "undefined variable $y",
        ),
        ("{{ $a, $b := .x }}", "bad variable declaration"),
        ("{{ .a | }}", "missing value"),
        ("{{ | .a }}", "missing value"),
        ("{{ ( .a }}", "unclosed left paren"),
        ("{{ .a ) }}", "unexpected \")\""),
        ("{{ .a.b.c\"x\" }}", "missing space"),
        ("{{ define \"x\" }}{{ end }}", "not supported"),
        ("{{ template \"x\" }}", "not supported"),
        ("{{ if }}{{ end }}", "missing value"),
        ("{{ 1 := 2 }}", "bad variable declaration"),
    ] {
        let err = Template::parse("t", text, &[]).unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(err.starts_with("template t: "), "{err}");
    }
    // Nesting is bounded (the parser recurses).
    let deep = "{{ if 1 }}".repeat(200) + &"{{ end }}".repeat(200);
    assert!(
        Template::parse("t", &deep, &[])
            .unwrap_err()
            .contains("too deep")
    );
    let parens = "{{ ".to_owned() + &"(".repeat(200) + "1" + &")".repeat(200) + " }}";
    assert!(
        Template::parse("t", &parens, &[])
            .unwrap_err()
            .contains("too deep")
    );
}

/// Arbitrary bytes never panic the lexer, parser or executor, and a parse always returns.
#[test]
fn arbitrary_input_never_panics() {
    let pieces = [
        "{{", "}}", "{{- ", " -}}", "/*", "*/", ".a", "$x", ":=", "=", "|", "(", ")", "\"", "`",
        "if", "else", "end", "range", "with", "break", " ", "\n", "1", "-", ",", "$", ".", "index",
        "printf", "\"%d\"", "x",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        seed = seed.wrapping_add(1);
        if let Ok(t) = Template::parse("t", &text, &["upper", "fail"]) {
            let _ = t.execute(&data(), &mut Test);
        }
    }
}
