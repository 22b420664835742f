//! The core's error type. Every failure carries a kind (which the C ABI turns into a status code)
//! and a message meant for an operator. Nothing in here knows about FFI.

use std::fmt;

/// What went wrong, coarse enough to act on. The C ABI maps each kind to one stable status code.
/// New kinds may be added (as new status codes are), so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A caller-supplied value is malformed (empty user id, control characters, bad JSON ...).
    InvalidInput,
    /// An action name that is not in the action table.
    UnknownAction,
    /// A list or string larger than the library accepts.
    TooLarge,
    /// The job (or cache entry) asked for does not exist.
    NotFound,
    /// Another connection kept the database locked past the busy timeout.
    Busy,
    /// The file was written by a newer library (its `user_version` is higher than we know).
    SchemaTooNew,
    /// The database file or its directory cannot be opened or created.
    CantOpen,
    /// The file or its directory is read-only.
    ReadOnly,
    /// The disk or the database's size limit is full.
    Full,
    /// The file is a database but damaged.
    Corrupt,
    /// The file is not an SQLite database at all.
    NotADatabase,
    /// Any other SQLite failure.
    Database,
    /// A URL outside the configured clusters, or not http(s).
    UrlNotAllowed,
    /// A bug inside the library (a caught panic, a poisoned lock).
    Internal,
    /// A bearer token too short to be redacted safely from what the cluster answers.
    TokenTooShort,
    /// An idempotency key already used by the same user for a different request.
    IdempotencyKeyReused,
    /// The audit chain is HMAC-keyed and this store has no key, or another one.
    AuditKeyMismatch,
    /// The audit log's chain is broken where an operation needs it whole (a chained row altered
    /// or removed, which adopting would hide): nothing was written.
    AuditChainBroken,
    /// A signed checkpoint of the audit log was refused: malformed, not signed by the key given
    /// (or its signature does not verify), or of another log.
    CheckpointInvalid,
}

impl ErrorKind {
    /// A stable name for answers and logs; the C ABI's status names are `TMS_STATUS_` + this.
    pub fn code_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "INVALID_INPUT",
            ErrorKind::UnknownAction => "UNKNOWN_ACTION",
            ErrorKind::TooLarge => "TOO_LARGE",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Busy => "BUSY",
            ErrorKind::SchemaTooNew => "SCHEMA_TOO_NEW",
            ErrorKind::CantOpen => "CANT_OPEN",
            ErrorKind::ReadOnly => "READ_ONLY",
            ErrorKind::Full => "FULL",
            ErrorKind::Corrupt => "CORRUPT",
            ErrorKind::NotADatabase => "NOT_A_DATABASE",
            ErrorKind::Database => "DATABASE",
            ErrorKind::UrlNotAllowed => "URL_NOT_ALLOWED",
            ErrorKind::Internal => "PANIC",
            ErrorKind::TokenTooShort => "TOKEN_TOO_SHORT",
            ErrorKind::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorKind::AuditKeyMismatch => "AUDIT_KEY_MISMATCH",
            ErrorKind::AuditChainBroken => "AUDIT_CHAIN_BROKEN",
            ErrorKind::CheckpointInvalid => "CHECKPOINT_INVALID",
        }
    }
}

/// A failure: what kind (which the C ABI maps to its status code) and a message for an operator.
///
/// ```
/// use tms::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::NotFound, "no job with id \"x\"");
/// assert_eq!((e.kind, e.kind.code_name()), (ErrorKind::NotFound, "NOT_FOUND"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Why, in a sentence (caller values quoted in part only).
    pub message: String,
}

/// The library's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    /// `InvalidInput`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }
    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }
    /// `Internal` (a bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
    /// Prefix the message with what was being done, keeping the kind.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => ErrorKind::Busy,
            Some(C::CannotOpen) | Some(C::PermissionDenied) => ErrorKind::CantOpen,
            Some(C::ReadOnly) => ErrorKind::ReadOnly,
            Some(C::DiskFull) => ErrorKind::Full,
            Some(C::DatabaseCorrupt) => ErrorKind::Corrupt,
            Some(C::NotADatabase) => ErrorKind::NotADatabase,
            _ => ErrorKind::Database,
        };
        Error::new(kind, format!("database error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid(format!("invalid JSON: {e}"))
    }
}

/// Longest piece of a caller's value that an error message quotes.
const SHOWN_CHARS: usize = 64;

/// A caller's value as an error message shows it: quoted with control characters escaped, and
/// cut to 64 characters (with its size) so that a huge or hostile value cannot flood answers,
/// logs or the audit log.
pub fn shown(value: &str) -> String {
    if value.chars().count() <= SHOWN_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_quoted_escaped_and_bounded() {
        assert_eq!(shown("a\tb"), "\"a\\tb\"");
        let long = "x".repeat(10 * 1024 * 1024);
        let s = shown(&long);
        assert!(s.len() < 100 && s.ends_with("(10485760 bytes)"), "{s}");
    }
}
