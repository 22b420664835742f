"""One exception class per status code of the C ABI (see include/tms.h, enum TmsStatus).

Every class derives from TmsError, which carries the numeric ``status`` and the library's own
message. Where a standard exception fits, the class also derives from it, so callers may catch
``ValueError`` or ``LookupError`` as they would elsewhere.
"""

from __future__ import annotations


class TmsError(Exception):
    """A call into libtms failed. ``status`` is the TmsStatus value, ``str(e)`` the message."""

    status: int = -1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NullArgumentError(TmsError, ValueError):
    status = 1


class InvalidUtf8Error(TmsError, ValueError):
    status = 2


class InvalidInputError(TmsError, ValueError):
    status = 3


class UnknownActionError(TmsError, ValueError):
    status = 4


class NotFoundError(TmsError, LookupError):
    status = 5


class BusyError(TmsError):
    status = 6


class SchemaTooNewError(TmsError):
    status = 7


class DatabaseError(TmsError):
    status = 8


class InternalError(TmsError):
    """A bug inside the library (a caught panic). The store stays usable."""

    status = 9


class TooLargeError(TmsError, ValueError):
    status = 10


class CantOpenError(TmsError, OSError):
    status = 11


class ReadOnlyError(TmsError):
    status = 12


class DatabaseFullError(TmsError):
    status = 13


class CorruptError(TmsError):
    status = 14


class NotADatabaseError(TmsError):
    status = 15


class UrlNotAllowedError(TmsError, ValueError):
    status = 16


class TokenTooShortError(TmsError, ValueError):
    """A bearer token under 8 bytes: it could not be redacted safely, so nothing was sent."""

    status = 17


class IdempotencyKeyReusedError(TmsError, ValueError):
    """The idempotency key was already used by this user for a different request."""

    status = 18


class AuditKeyMismatchError(TmsError):
    """The audit log is HMAC-keyed and this store has no key, or another one."""

    status = 19


class AuditChainBrokenError(TmsError):
    """The audit log's chain is broken where the call needs it whole (``adopt_unchained``:
    unchained rows inside the chain, or altered rows); nothing was written."""

    status = 20


class CheckpointInvalidError(TmsError):
    """A signed audit checkpoint was refused: malformed, its signature does not verify with the
    public key given (altered, forged, or signed by another key), or of another log."""

    status = 21


BY_STATUS: dict[int, type[TmsError]] = {
    cls.status: cls
    for cls in (
        NullArgumentError,
        InvalidUtf8Error,
        InvalidInputError,
        UnknownActionError,
        NotFoundError,
        BusyError,
        SchemaTooNewError,
        DatabaseError,
        InternalError,
        TooLargeError,
        CantOpenError,
        ReadOnlyError,
        DatabaseFullError,
        CorruptError,
        NotADatabaseError,
        UrlNotAllowedError,
        TokenTooShortError,
        IdempotencyKeyReusedError,
        AuditKeyMismatchError,
        AuditChainBrokenError,
        CheckpointInvalidError,
    )
}


def error_for(status: int, message: str) -> TmsError:
    """The exception for a status code (an unknown code gives a plain TmsError)."""
    cls = BY_STATUS.get(status)
    if cls is None:
        return TmsError(message, status)
    return cls(message)
