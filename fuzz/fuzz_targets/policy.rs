//! HCL policies (`sigil-core` `policy/parse.rs`): `parse_policy`, then the ACL built from the
//! policy, plain and with templates filled in, queried at every rule's path. A deny at an
//! exact path must deny everything there.
//!
//! Input: UTF-8 policy text.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil_core::policy::{Acl, Capability, TemplateContext, parse_policy};

const CAPABILITIES: [Capability; 7] = [
    Capability::Create,
    Capability::Read,
    Capability::Update,
    Capability::Patch,
    Capability::Delete,
    Capability::List,
    Capability::Sudo,
];

fn context() -> &'static TemplateContext {
    static CELL: OnceLock<TemplateContext> = OnceLock::new();
    CELL.get_or_init(|| TemplateContext {
        name: "alice".into(),
        id: "0f1e2d3c".into(),
        metadata: BTreeMap::from([("team".into(), "ops".into())]),
        groups: vec!["devs".into(), "ops".into()],
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = parse_policy("fuzz", text) else {
        return;
    };
    assert!(!policy.rules.is_empty());
    let acl = Acl::new([&policy]);
    let templated = Acl::for_caller([&policy], context());
    for rule in &policy.rules {
        let path = rule.path.as_str();
        for query in [path, &format!("{path}/"), &format!("{path}x/y")] {
            let _ = acl.capabilities(query, false);
            let _ = acl.capabilities(query, true);
            let _ = templated.capabilities(query, query.ends_with('/'));
        }
        let exact = !rule.templated && !rule.is_prefix && !rule.has_segment_wildcards;
        if exact && rule.capabilities.is_deny() {
            for cap in CAPABILITIES {
                assert!(!acl.allows(path, cap), "deny at {path:?} allows {cap:?}");
            }
        }
    }
});
