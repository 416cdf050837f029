//! What a cluster's nodes read from each other and from nodes asking to join: Raft's RPCs,
//! log entries (postcard) and snapshot files (`sigil-raft`), and the unauthenticated join request
//! (JSON, checked as the leader checks it). Whatever the bytes: no panic, and a message that
//! decodes encodes back to one that decodes.
//!
//! Input: any bytes, given to every decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sigil_raft::fuzzing::decode_peer_message(data);
    let _ = sigil_server::fuzzing::join_request(data);
});
