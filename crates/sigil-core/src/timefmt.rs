//! Timestamps in Vault's format (RFC 3339, UTC, nanoseconds).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}
