//! `signature::parse` — which reads canonical headers directly — against
//! `signature::parse_general`, the RFC 8941 parser (`sfv`): the same answer for every input.
//!
//! Input: a flags byte, then UTF-8 text. Bit 0 clear: the text is `Signature-Input`, a
//! newline, then `Signature`. Bit 0 set (template mode): the text's bytes replace, one for one
//! from the position `flags >> 1`, the bytes of a canonical header pair as a client writes it,
//! so that the fuzzer's edits stay close to the direct reading's edge.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_proto::signature::{parse, parse_general};

const INPUT: &str = "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1800000000;expires=1800000060;nonce=\"c2lnaWwtZnV6ei1ub25jZS0wMDAx\";keyid=\"OoMjqngvh-Bby7T6q0cTAnc_CL2jNeVzo5oEWVM_eVk\";alg=\"ed25519\";tag=\"sigil-request\"";
const SIGNATURE: &str = "sig1=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==:";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let built;
    let text = if flags & 1 == 1 {
        let mut bytes = format!("{INPUT}\n{SIGNATURE}").into_bytes();
        let at = usize::from(flags >> 1);
        for (i, b) in rest.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(at + i) {
                *slot = *b;
            }
        }
        let Ok(t) = String::from_utf8(bytes) else {
            return;
        };
        built = t;
        built.as_str()
    } else {
        let Ok(t) = std::str::from_utf8(rest) else {
            return;
        };
        t
    };
    let (input, signature) = text.split_once('\n').unwrap_or((text, ""));
    assert_eq!(parse(input, signature), parse_general(input, signature));
});
