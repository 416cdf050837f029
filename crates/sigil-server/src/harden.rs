//! Process hardening before any key exists: no core dumps, not dumpable (no ptrace by other
//! users, no /proc/PID/mem), and all memory locked so keys are never swapped to disk
//! (DESIGN.md §2.8). Uses `rustix`'s safe wrappers: no `unsafe` here.

use rustix::mm::{MlockAllFlags, mlockall};
use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Why hardening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardenError {
    /// Core dumps could not be disabled.
    #[error("cannot disable core dumps: {0}")]
    CoreDumps(std::io::Error),
    /// Memory could not be locked, and running unlocked was not allowed.
    #[error(
        "cannot lock memory ({0}): secrets could be swapped to disk. Give the process CAP_IPC_LOCK (or raise RLIMIT_MEMLOCK, e.g. `ulimit -l unlimited`), or pass --allow-unlocked-memory to run without"
    )]
    MemoryLock(std::io::Error),
}

/// What hardening achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// Whether all current and future memory is locked.
    pub memory_locked: bool,
}

/// Disables core dumps, makes the process non-dumpable and locks its memory. If memory cannot
/// be locked, fails unless `allow_unlocked_memory`, in which case it warns loudly.
pub fn harden_process(allow_unlocked_memory: bool) -> Result<Hardening, HardenError> {
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, none).map_err(|e| HardenError::CoreDumps(e.into()))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| HardenError::CoreDumps(e.into()))?;
    // ONFAULT: lock pages as they are touched, so reserved-but-unused memory (thread stacks,
    // allocator arenas) does not balloon the resident size.
    let flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT;
    match mlockall(flags) {
        Ok(()) => Ok(Hardening {
            memory_locked: true,
        }),
        Err(e) if allow_unlocked_memory => {
            tracing::warn!(
                error = %e,
                "MEMORY IS NOT LOCKED: keys and secrets may be swapped to disk (--allow-unlocked-memory)"
            );
            Ok(Hardening {
                memory_locked: false,
            })
        }
        Err(e) => Err(HardenError::MemoryLock(e.into())),
    }
}
