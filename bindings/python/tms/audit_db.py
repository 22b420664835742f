"""Drop-in replacement for the legacy audit module: same names, parameters, defaults and return
shapes, on libtms.

AUDIT_DB_PATH is read from TMS_AUDIT_DB at import; without it, the one-line shim that replaces an
app's own `src/audit_db.py` (`sys.modules[__name__] = tms.audit_db.in_place_of(__file__)`) makes
it the legacy module's file, `audit.db` in the app's root, and otherwise it is "audit.db" in the
working directory. Assigning the attribute later switches files. The store's options (the audit chain's
HMAC key among them) come from the environment or `tms.configure(...)` before first use (see
tms._shared). Failures keep the legacy return (None, False, [] or {}) and log the library's
message through `logging`. Unlike the legacy module, customer_id filters match whole IDs ("c1" no
longer matches "c10").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from types import ModuleType
from typing import Any, Iterable

from . import _shared, get_action_code
from ._shared import configure  # noqa: F401  (options for the drop-in store)
from .errors import TmsError

AUDIT_DB_PATH = os.environ.get("TMS_AUDIT_DB") or "audit.db"
_PATH_AT_IMPORT = AUDIT_DB_PATH  # the default, until the app or in_place_of() says otherwise

TRACKED_ACTIONS = ["Trans-Begin", "PE-Enable", "T-Enable", "PE-Finalize", "PE-Direct"]

log = logging.getLogger("tms.audit_db")


def in_place_of(legacy_file: str) -> ModuleType:
    """This module, standing in for an app's own audit module at `legacy_file` (its `__file__`).
    Unless TMS_AUDIT_DB is set (or AUDIT_DB_PATH was assigned), AUDIT_DB_PATH becomes the file
    that module used: `audit.db` one directory above it, the app's root, from any working
    directory (and `tms.jobs.DB_PATH` the `jobs.db` beside it). The app's `src/audit_db.py`
    becomes one line:

        import sys, tms.audit_db; sys.modules[__name__] = tms.audit_db.in_place_of(__file__)
    """
    _shared.use_legacy_files(legacy_file)
    return sys.modules[__name__]


def _failed(what: str, err: Exception) -> None:
    log.error("%s failed: %s", what, err)


def initialize_database() -> None:
    """Create or migrate the audit table (opening the store does both); a file deleted or
    replaced since the store opened is opened anew."""
    _shared.initialize()


def get_db_connection() -> sqlite3.Connection:
    """A plain `sqlite3` connection to audit.db with `sqlite3.Row` rows, as the legacy helper
    gave, for the app's own reads. The log is append-only (UPDATE and DELETE are refused), and a
    row INSERTed through it is not on the hash chain: `verify_audit` reports it as inserted.
    Write audit rows with `log_action`."""
    _shared.store()
    conn = sqlite3.connect(AUDIT_DB_PATH, timeout=5.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def log_action(user_id: str, action_type: str, customer_ids: str | Iterable[str | int] | None = None,
               ip_address: str | None = None, status: str = "success", error_message: str | None = None,
               duration_ms: int | None = None) -> int | None:
    """Write one audit row; its id, or None on failure."""
    try:
        return _shared.store().record_audit(user_id, action_type, customer_ids, ip_address,
                                            status, error_message, duration_ms)
    except (TmsError, TypeError) as e:
        _failed("log_action", e)
        return None


def log_user_action(user_id: str, action_type: str, customer_ids: str | Iterable[str | int] | None = None,
                    ip_address: str | None = None, status: str = "success", error_message: str | None = None,
                    duration_ms: int | None = None) -> int | None:
    """log_action, warning first when the action is not one of the tracked Set Actions."""
    if action_type not in TRACKED_ACTIONS and get_action_code(action_type) is None:
        log.warning("untracked action type %r logged by %r", action_type, user_id)
    return log_action(user_id, action_type, customer_ids, ip_address, status, error_message,
                      duration_ms)


def get_audit_trail(limit: int = 50, user_id: str | None = None, action_type: str | None = None,
                    customer_id: str | None = None) -> list[dict[str, Any]]:
    try:
        return _shared.store().audit_trail(limit, user_id, action_type, customer_id)
    except TmsError as e:
        _failed("get_audit_trail", e)
        return []


def get_user_actions(user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    return get_audit_trail(limit=limit, user_id=user_id)


def get_customer_actions(customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
    return get_audit_trail(limit=limit, customer_id=customer_id)


def get_action_types() -> list[str]:
    try:
        return _shared.store().action_types()
    except TmsError as e:
        _failed("get_action_types", e)
        return []


def get_audit_stats() -> dict[str, Any]:
    try:
        return _shared.store().audit_stats()
    except TmsError as e:
        _failed("get_audit_stats", e)
        return {}


def clear_audit_logs() -> bool:
    try:
        _shared.store().clear_audit_logs()
        return True
    except TmsError as e:
        _failed("clear_audit_logs", e)
        return False
