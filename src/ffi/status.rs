use crate::error::ErrorKind;

/// The status every fallible `tms_` function returns. 0 is success; the values are stable and
/// never reused. On failure `tms_last_error_message()` explains it and no output was written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmsStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// An argument's value was refused (empty user id, control characters, bad JSON, range ...).
    InvalidInput = 3,
    /// The action name is not one of the known Set Actions.
    UnknownAction = 4,
    /// The job or cache entry does not exist.
    NotFound = 5,
    /// The database stayed locked by another connection past the busy timeout.
    Busy = 6,
    /// The database file was written by a newer version of this library.
    SchemaTooNew = 7,
    /// Any other SQLite failure.
    Database = 8,
    /// A bug inside the library was caught at the boundary; the store is still usable.
    Panic = 9,
    /// A list or string is larger than the library accepts (e.g. over 100,000 customer IDs).
    TooLarge = 10,
    /// The database file or its directory cannot be opened or created.
    CantOpen = 11,
    /// The database file or its directory is read-only.
    ReadOnly = 12,
    /// The disk, or the database's size limit, is full.
    Full = 13,
    /// The database file is damaged.
    Corrupt = 14,
    /// The file is not an SQLite database.
    NotADatabase = 15,
    /// The URL is not under an allowed cluster, or its scheme is not http/https.
    UrlNotAllowed = 16,
    /// A bearer token under 8 bytes: it could not be redacted safely from what is stored, so the
    /// request is refused before anything is sent.
    TokenTooShort = 17,
    /// The idempotency key was already used by this user for a different request; nothing was sent.
    IdempotencyKeyReused = 18,
    /// The audit log is chained with an HMAC key and this store was opened without it (or with
    /// another key): it may not append rows the chain's owner could not verify.
    AuditKeyMismatch = 19,
    /// The audit log's chain is broken where the operation needs it whole (`tms_adopt_unchained`:
    /// a chained row altered or removed, or the rows before the chain not matching it): nothing
    /// was written. Run `tms_verify_audit` to see the first problem.
    AuditChainBroken = 20,
    /// A signed audit checkpoint was refused: malformed, its signature does not verify with the
    /// public key given (altered, forged, or signed by another key), or of another log.
    CheckpointInvalid = 21,
}

// Not `pub`: cbindgen would export it into the header.
const ALL: [TmsStatus; 22] = [
    TmsStatus::Ok,
    TmsStatus::NullArgument,
    TmsStatus::InvalidUtf8,
    TmsStatus::InvalidInput,
    TmsStatus::UnknownAction,
    TmsStatus::NotFound,
    TmsStatus::Busy,
    TmsStatus::SchemaTooNew,
    TmsStatus::Database,
    TmsStatus::Panic,
    TmsStatus::TooLarge,
    TmsStatus::CantOpen,
    TmsStatus::ReadOnly,
    TmsStatus::Full,
    TmsStatus::Corrupt,
    TmsStatus::NotADatabase,
    TmsStatus::UrlNotAllowed,
    TmsStatus::TokenTooShort,
    TmsStatus::IdempotencyKeyReused,
    TmsStatus::AuditKeyMismatch,
    TmsStatus::AuditChainBroken,
    TmsStatus::CheckpointInvalid,
];

impl TmsStatus {
    /// The status with this numeric value, if any.
    pub fn from_code(code: i32) -> Option<TmsStatus> {
        ALL.iter().copied().find(|s| *s as i32 == code)
    }

    /// The name C callers see, NUL-terminated.
    pub fn name(self) -> &'static str {
        match self {
            TmsStatus::Ok => "TMS_STATUS_OK\0",
            TmsStatus::NullArgument => "TMS_STATUS_NULL_ARGUMENT\0",
            TmsStatus::InvalidUtf8 => "TMS_STATUS_INVALID_UTF8\0",
            TmsStatus::InvalidInput => "TMS_STATUS_INVALID_INPUT\0",
            TmsStatus::UnknownAction => "TMS_STATUS_UNKNOWN_ACTION\0",
            TmsStatus::NotFound => "TMS_STATUS_NOT_FOUND\0",
            TmsStatus::Busy => "TMS_STATUS_BUSY\0",
            TmsStatus::SchemaTooNew => "TMS_STATUS_SCHEMA_TOO_NEW\0",
            TmsStatus::Database => "TMS_STATUS_DATABASE\0",
            TmsStatus::Panic => "TMS_STATUS_PANIC\0",
            TmsStatus::TooLarge => "TMS_STATUS_TOO_LARGE\0",
            TmsStatus::CantOpen => "TMS_STATUS_CANT_OPEN\0",
            TmsStatus::ReadOnly => "TMS_STATUS_READ_ONLY\0",
            TmsStatus::Full => "TMS_STATUS_FULL\0",
            TmsStatus::Corrupt => "TMS_STATUS_CORRUPT\0",
            TmsStatus::NotADatabase => "TMS_STATUS_NOT_A_DATABASE\0",
            TmsStatus::UrlNotAllowed => "TMS_STATUS_URL_NOT_ALLOWED\0",
            TmsStatus::TokenTooShort => "TMS_STATUS_TOKEN_TOO_SHORT\0",
            TmsStatus::IdempotencyKeyReused => "TMS_STATUS_IDEMPOTENCY_KEY_REUSED\0",
            TmsStatus::AuditKeyMismatch => "TMS_STATUS_AUDIT_KEY_MISMATCH\0",
            TmsStatus::AuditChainBroken => "TMS_STATUS_AUDIT_CHAIN_BROKEN\0",
            TmsStatus::CheckpointInvalid => "TMS_STATUS_CHECKPOINT_INVALID\0",
        }
    }
}

impl From<ErrorKind> for TmsStatus {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidInput => TmsStatus::InvalidInput,
            ErrorKind::UnknownAction => TmsStatus::UnknownAction,
            ErrorKind::TooLarge => TmsStatus::TooLarge,
            ErrorKind::NotFound => TmsStatus::NotFound,
            ErrorKind::Busy => TmsStatus::Busy,
            ErrorKind::SchemaTooNew => TmsStatus::SchemaTooNew,
            ErrorKind::CantOpen => TmsStatus::CantOpen,
            ErrorKind::ReadOnly => TmsStatus::ReadOnly,
            ErrorKind::Full => TmsStatus::Full,
            ErrorKind::Corrupt => TmsStatus::Corrupt,
            ErrorKind::NotADatabase => TmsStatus::NotADatabase,
            ErrorKind::Database => TmsStatus::Database,
            ErrorKind::UrlNotAllowed => TmsStatus::UrlNotAllowed,
            ErrorKind::Internal => TmsStatus::Panic,
            ErrorKind::TokenTooShort => TmsStatus::TokenTooShort,
            ErrorKind::IdempotencyKeyReused => TmsStatus::IdempotencyKeyReused,
            ErrorKind::AuditKeyMismatch => TmsStatus::AuditKeyMismatch,
            ErrorKind::AuditChainBroken => TmsStatus::AuditChainBroken,
            ErrorKind::CheckpointInvalid => TmsStatus::CheckpointInvalid,
        }
    }
}
