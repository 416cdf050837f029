//! The server's TOML configuration (`sigil server -c FILE`): `ServerFile::parse`, compiled from
//! sigil-cli's own `server_config.rs` (the binary crate has no library to link), then every
//! check the server runs on it (audit devices, `api_addr`'s authority). It must refuse bad
//! input with an error, never panic.
//!
//! Input: UTF-8 configuration text.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sigil-cli/src/server_config.rs"]
#[allow(dead_code, unreachable_pub)]
mod server_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = server_config::ServerFile::parse(text, "fuzz.toml") {
        for audit in &file.audit {
            audit.device().expect("parse checked every device");
        }
        if let Some(addr) = &file.api_addr {
            server_config::api_authority(addr.get_ref()).expect("parse checked api_addr");
        }
    }
});
