"""Drop-in replacement for the legacy jobs module: same names, parameters, defaults and return
shapes, on libtms. Switch the Flask app with `from tms import jobs` (and `from tms import audit_db`).

DB_PATH is read from TMS_JOBS_DB at import; without it, the one-line shim that replaces an
app's own `src/jobs.py` (`sys.modules[__name__] = tms.jobs.in_place_of(__file__)`) makes it the
file the legacy module used, `jobs.db` in the app's root, and otherwise it is "jobs.db" in the
working directory. Assigning the attribute later switches files, as it did in the legacy module. The
store's options come from the environment (TMS_SYNCHRONOUS, TMS_AUDIT_HMAC_KEY, ...) or from
`tms.configure(...)` before first use (see tms._shared). Failures keep the legacy return (None,
False, [] or {}) and log the library's message through `logging`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from types import ModuleType
from typing import Any, Iterable

from . import _shared
from . import get_action_code  # noqa: F401  (the app's helper lives here too)
from ._shared import configure  # noqa: F401  (options for the drop-in store)
from .errors import NotFoundError, TmsError

DB_PATH = os.environ.get("TMS_JOBS_DB") or "jobs.db"
_PATH_AT_IMPORT = DB_PATH  # the default, until the app or in_place_of() says otherwise

log = logging.getLogger("tms.jobs")

_JOB_DETAIL_KEYS = ("job_id", "user_id", "batch_id", "action_code", "action_name", "cluster_url",
                    "created_at", "request_payload", "response_summary", "status",
                    "customer_count")
_USER_JOB_KEYS = ("job_id", "user_id", "action_code", "action_name", "cluster_url", "created_at",
                  "status", "http_status", "error_message", "customer_count")


def in_place_of(legacy_file: str) -> ModuleType:
    """This module, standing in for an app's own jobs module at `legacy_file` (its `__file__`).
    Unless TMS_JOBS_DB is set (or DB_PATH was assigned), DB_PATH becomes the file that module
    used: `jobs.db` one directory above it, the app's root, from any working directory (and
    `tms.audit_db.AUDIT_DB_PATH` the `audit.db` beside it). The app's `src/jobs.py` becomes one
    line:

        import sys, tms.jobs; sys.modules[__name__] = tms.jobs.in_place_of(__file__)
    """
    _shared.use_legacy_files(legacy_file)
    return sys.modules[__name__]


def _failed(what: str, err: Exception) -> None:
    log.error("%s failed: %s", what, err)


def initialize_jobs_database() -> None:
    """Create or migrate the tables (opening the store does both); a database file deleted or
    replaced since the store opened is opened anew, as the legacy function recreated it."""
    _shared.initialize()


def sqlite3_connect(path: str | os.PathLike[str] | None = None, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    """A plain `sqlite3` connection to jobs.db (DB_PATH by default) for the app's own SQL, set up
    as the legacy helper set it up (busy timeout, foreign keys). The tables exist first."""
    _shared.store()
    kwargs.setdefault("timeout", 5.0)
    conn = sqlite3.connect(DB_PATH if path is None else path, *args, **kwargs)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def create_job(user_id: str, action_code: int, action_name: str, cids: Iterable[str | int],
               cluster_url: str | None = None, batch_id: str | None = None, request_payload: Any = None,
               response_summary: Any = None, status: str = "IN_PROGRESS") -> dict[str, Any] | None:
    """Create a job and its customers atomically; the legacy dict, or None on failure."""
    try:
        return _shared.store().create_job(user_id, action_code, action_name, cids, cluster_url,
                                          batch_id, request_payload, response_summary, status)
    except TmsError as e:
        _failed("create_job", e)
        return None


def update_job(job_id: str, status: str, http_status: int | None = None, error_message: str | None = None,
               response_summary: Any = None) -> bool:
    try:
        _shared.store().update_job(job_id, status, http_status, error_message, response_summary)
        return True
    except TmsError as e:
        _failed("update_job", e)
        return False


def get_user_jobs(user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    try:
        rows = _shared.store().get_user_jobs(user_id, limit)
    except TmsError as e:
        _failed("get_user_jobs", e)
        return []
    return [{k: row[k] for k in _USER_JOB_KEYS} for row in rows]


def get_job_customers(job_id: str) -> list[str]:
    try:
        return _shared.store().get_job_customers(job_id)
    except NotFoundError:
        return []
    except TmsError as e:
        _failed("get_job_customers", e)
        return []


def get_job_details(job_id: str) -> dict[str, Any] | None:
    try:
        job = _shared.store().get_job(job_id)
    except NotFoundError:
        return None
    except TmsError as e:
        _failed("get_job_details", e)
        return None
    return {k: job[k] for k in _JOB_DETAIL_KEYS}


def get_cached_appstatus(cid: str, app_name: str = "ALL", ttl_seconds: int = 1800) -> Any:
    try:
        return _shared.store().cache_get(cid, app_name, ttl_seconds)
    except TmsError as e:
        _failed("get_cached_appstatus", e)
        return None


def cache_appstatus(cid: str, status_data: Any, app_name: str = "ALL", ttl_seconds: int = 1800) -> bool:
    try:
        _shared.store().cache_put(cid, status_data, app_name, ttl_seconds)
        return True
    except (TmsError, TypeError, ValueError) as e:
        _failed("cache_appstatus", e)
        return False


def cleanup_expired_cache(ttl_seconds: int = 1800) -> int:
    try:
        return _shared.store().cache_cleanup(ttl_seconds)
    except TmsError as e:
        _failed("cleanup_expired_cache", e)
        return 0


def get_cached_appstatus_batch(cids: Iterable[str | int], app_name: str = "ALL",
                               ttl_seconds: int = 1800) -> dict[str, Any]:
    try:
        return _shared.store().cache_get_batch(cids, app_name, ttl_seconds)
    except TmsError as e:
        _failed("get_cached_appstatus_batch", e)
        misses = list(dict.fromkeys(cids))
        return {"hits": {}, "misses": misses, "hit_count": 0, "miss_count": len(misses)}


def invalidate_appstatus_cache(cid: str | None = None, app_name: str | None = None) -> int:
    try:
        return _shared.store().cache_invalidate(cid, app_name)
    except TmsError as e:
        _failed("invalidate_appstatus_cache", e)
        return 0


def get_cache_stats() -> dict[str, Any]:
    try:
        return _shared.store().cache_stats()
    except TmsError as e:
        _failed("get_cache_stats", e)
        return {"total_entries": 0, "unique_cids": 0, "size_bytes": 0, "size_kb": 0.0}
