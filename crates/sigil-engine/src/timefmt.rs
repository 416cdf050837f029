//! Timestamps in Vault's format (RFC 3339, UTC, nanoseconds).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}

/// `secs` from now, as RFC 3339.
pub fn rfc3339_after(secs: u64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs.min(i64::MAX as u64) as i64))
        .format(&Rfc3339)
        .expect("a time within ten years formats as RFC 3339")
}

/// Whether an RFC 3339 time is now or earlier. An unparseable time counts as past, so a
/// corrupted deletion time hides a version rather than revealing it.
pub fn is_past(text: &str) -> bool {
    OffsetDateTime::parse(text, &Rfc3339).map_or(true, |t| t <= OffsetDateTime::now_utc())
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix seconds as RFC 3339 (empty when out of range).
pub fn rfc3339_of(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
