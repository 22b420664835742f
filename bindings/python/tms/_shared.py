"""The store behind the drop-in modules and `tms.shared_store()`: one per (jobs path, audit
path), opened on first use and kept for the life of the process (the legacy code opened a
connection per call), so a route calling `tms.shared_store().set_action(...)` and the drop-ins'
`create_job`/`log_action` share one pool and one configuration.

Its options come from the environment and from `tms.configure(...)` (which wins), both read at
first use. Each option has an environment variable `TMS_<NAME IN CAPITALS>`:

    TMS_SYNCHRONOUS=NORMAL  TMS_BUSY_TIMEOUT_MS=5000  TMS_ALLOWED_CLUSTERS="https://a/tms/ https://b/tms/"
    TMS_AUDIT_HMAC_KEY=...  (or TMS_AUDIT_HMAC_KEY_FILE=/path/to/key, its first line)
    TMS_CA_BUNDLE=/path/ca.pem  (else REQUESTS_CA_BUNDLE, which the legacy `requests` honoured)
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .errors import InvalidInputError
from .store import STORE_OPTIONS, Store

_stores: dict[tuple[str, str], Store] = {}
# The files (device, inode) each store opened, to notice one deleted or replaced since.
_opened_files: dict[tuple[str, str], tuple[tuple[int, int] | None, ...]] = {}
_lock = threading.Lock()
_configured: dict[str, Any] = {}

log = logging.getLogger("tms")

_INTEGER_OPTIONS = {"busy_timeout_ms", "journal_size_limit_bytes", "max_idle_connections", "max_page_count",
                    "request_timeout_s", "connect_timeout_s", "max_response_bytes", "interrupted_after_s"}


def configure(**options: Any) -> None:
    """Set store options for the drop-in modules (`tms.jobs`, `tms.audit_db`) before their first
    use; they override the `TMS_*` environment variables. Options are those of `tms.Store`; a
    value of None removes one. Calling it once a drop-in store is open raises InvalidInputError,
    as the options could no longer take effect."""
    unknown = sorted(set(options) - set(STORE_OPTIONS))
    if unknown:
        raise InvalidInputError(f"unknown store option(s) {unknown}; known: {list(STORE_OPTIONS)}")
    with _lock:
        if _stores:
            raise InvalidInputError("the drop-in modules' store is already open: call tms.configure() "
                                    "before the first call into tms.jobs or tms.audit_db")
        for name, value in options.items():
            if value is None:
                _configured.pop(name, None)
            else:
                _configured[name] = value


def _from_environment() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in STORE_OPTIONS:
        var = "TMS_" + name.upper()
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        if name in _INTEGER_OPTIONS:
            try:
                found[name] = int(raw)
            except ValueError:
                raise InvalidInputError(f"{var}={raw!r} is not an integer") from None
        elif name == "allowed_clusters":
            found[name] = raw.replace(",", " ").split()
        elif name == "create":
            if raw.strip().lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise InvalidInputError(f"{var}={raw!r} is not a boolean (1, 0, true, false, yes, no)")
            found[name] = raw.strip().lower() in ("1", "true", "yes")
        else:
            found[name] = raw
    key_file = os.environ.get("TMS_AUDIT_HMAC_KEY_FILE")
    if key_file and "audit_hmac_key" not in found:
        try:
            with open(key_file, encoding="utf-8") as f:
                found["audit_hmac_key"] = f.readline().rstrip("\r\n")
        except OSError as e:
            raise InvalidInputError(f"TMS_AUDIT_HMAC_KEY_FILE: cannot read {key_file!r}: {e}") from None
    if "ca_bundle" not in found and os.environ.get("REQUESTS_CA_BUNDLE"):
        found["ca_bundle"] = os.environ["REQUESTS_CA_BUNDLE"]
    return found


def options() -> dict[str, Any]:
    """The options the drop-in store opens with."""
    return {**_from_environment(), **_configured}


def jobs_path() -> str:
    from . import jobs

    return jobs.DB_PATH


def audit_path() -> str:
    from . import audit_db

    return audit_db.AUDIT_DB_PATH


def _is_url(location: str) -> bool:
    return location.lower().startswith(("postgresql://", "postgres://"))


def _key() -> tuple[str, str]:
    """The store's location: a PostgreSQL URL (jobs and audit in one database) or two files."""
    jobs = os.fspath(jobs_path())
    if _is_url(jobs):
        return (jobs, jobs)
    return (os.path.abspath(jobs), os.path.abspath(audit_path()))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def _open(key: tuple[str, str]) -> Store:
    if _is_url(key[0]):
        return Store(key[0], None, **options())
    missing = [p for p in key if not os.path.exists(p)]
    store = Store(*key, **options())
    for path in missing:
        which = "jobs" if path == key[0] else "audit"
        variable = "TMS_JOBS_DB (or tms.jobs.DB_PATH)" if which == "jobs" else "TMS_AUDIT_DB (or tms.audit_db.AUDIT_DB_PATH)"
        log.warning("created a new, empty %s database at %s; if the app's data is elsewhere, set %s",
                    which, path, variable)
    _opened_files[key] = tuple(_identity(p) for p in key)
    return store


def store() -> Store:
    """The store for the modules' current DB_PATH and AUDIT_DB_PATH."""
    key = _key()
    found = _stores.get(key)
    if found is not None:
        return found
    with _lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = _open(key)
        return found


def shared_store() -> Store:
    """The process-wide store of the drop-in modules (`tms.jobs`, `tms.audit_db`): opened on first
    use at `tms.jobs.DB_PATH` and `tms.audit_db.AUDIT_DB_PATH`, with the options of the `TMS_*`
    environment and `tms.configure(...)` (the audit log's HMAC key, `allowed_clusters`, timeouts,
    `synchronous`, ...). Use it in the app's routes, so that they write through the same store and
    the same settings as the drop-ins; `tms.Store(...)` is for programs that want their own.

    When the app has configured no logging at all (no handler on the `tms` loggers nor on the
    root logger), the Set Action events (`set_action_start`, `set_action_done`) are written to
    stderr in the legacy log's line format, as the legacy route printed its `[SET_ACTION]` lines.
    """
    found = store()
    _log_events_by_default()
    return found


_EVENT_FORMAT = "%(asctime)s | %(levelname)-8s | %(message)s"
_events_checked = False


def _log_events_by_default() -> None:
    global _events_checked
    if _events_checked:
        return
    with _lock:
        if _events_checked:
            return
        _events_checked = True
        events = logging.getLogger("tms.set_action")
        if events.hasHandlers():
            return  # the app routes logging itself (basicConfig, dictConfig, its own handler)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_EVENT_FORMAT, "%Y-%m-%d %H:%M:%S"))
        events.addHandler(handler)
        # Not passed on as well: an app that sets up logging later would print each line twice.
        events.propagate = False
        if events.level == logging.NOTSET:
            events.setLevel(logging.INFO)


def use_legacy_files(module_file: str) -> None:
    """Where the legacy modules beside `module_file` kept their databases, as the drop-ins'
    defaults: `jobs.db` and `audit.db` in the app's root (see `legacy_path`), for both modules at
    once (a script importing only `src.jobs` must not open an audit.db in its working
    directory). A path from TMS_JOBS_DB / TMS_AUDIT_DB, or one the app assigned, stays."""
    from . import audit_db, jobs

    for module, attribute, variable, name in ((jobs, "DB_PATH", "TMS_JOBS_DB", "jobs.db"),
                                              (audit_db, "AUDIT_DB_PATH", "TMS_AUDIT_DB", "audit.db")):
        if not os.environ.get(variable) and getattr(module, attribute) == module._PATH_AT_IMPORT:
            setattr(module, attribute, legacy_path(module_file, name))


def legacy_path(module_file: str, name: str) -> str:
    """Where a legacy module at `module_file` (`<app>/src/jobs.py`) kept its database: `name` in
    the directory above it, the app's root (`os.path.join(os.path.dirname(__file__), '..',
    name)`), made absolute so that no working directory changes it."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(module_file)), "..", name))


def initialize() -> Store:
    """Open the store, or reopen it when a file was deleted or replaced since (the legacy
    initialize functions recreated a deleted database; a store kept open would go on writing
    to the deleted file)."""
    current = store()
    key = _key()
    if _is_url(key[0]) or tuple(_identity(p) for p in key) == _opened_files.get(key):
        return current
    with _lock:
        if _stores.get(key) is current:
            del _stores[key]
    log.warning("%s changed on disk since it was opened: reopening", " or ".join(key))
    return store()


def _reset_for_tests(configured: dict[str, Any]) -> None:
    """Forget the open stores and restore configure()'s options (tests only)."""
    with _lock:
        for s in _stores.values():
            s.close()
        _stores.clear()
        _opened_files.clear()
        _configured.clear()
        _configured.update(configured)
