//! Ports a test picks before a process binds them.
//!
//! Asking the kernel for port 0 and passing the number on races with every outgoing
//! connection on the machine: the kernel hands those their local port from the same
//! ephemeral range (32768–60999 on Linux), and a cluster test that starts a node seconds
//! after choosing its port lost that race in CI. Ports here come from below that range, in
//! blocks of 16 that each test process walks from its own starting point, and are checked
//! free by binding them.

use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 10_000;
const BLOCK: u32 = 16;
/// Blocks between `FIRST` and 32 000, under the ephemeral range.
const BLOCKS: u32 = (32_000 - FIRST) / BLOCK;

/// The first of `count` (≤ 16) consecutive free ports, in a block no other call of this
/// process returns.
pub fn free_ports(count: u16) -> u16 {
    assert!(
        u32::from(count) <= BLOCK,
        "at most {BLOCK} ports in a block"
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(97);
    for _ in 0..BLOCKS {
        let block = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = (FIRST + (start.wrapping_add(block) % BLOCKS) * BLOCK) as u16;
        let free = (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {count} free ports in a row below the ephemeral range");
}

/// One free port.
pub fn free_port() -> u16 {
    free_ports(1)
}
