"""`tms.Store`: the library's store handle as a Python object that raises on failure."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
from ctypes import c_int32, c_int64, c_uint64, c_void_p
from typing import Any, Iterable, Mapping, cast

from . import _native
from ._native import call_json, check, encode, id_blob, lib, string_array
from .errors import InvalidInputError, NotFoundError, TmsError


def _from_json(text: str) -> Any:
    """The library's JSON answers: compact, one value, no surrounding whitespace, so the
    decoder's raw entry point does (json.loads adds two regex scans for whitespace)."""
    return _JSON_DECODER.raw_decode(text)[0]


_JSON_DECODER = json.JSONDecoder()


def _json_text(value: Any) -> str | None:
    """A Python value as JSON text for the library; None stays NULL."""
    return None if value is None else json.dumps(value)


def _summary_text(value: Any) -> str | None:
    """response_summary is free text; anything else is stored as its JSON text, as legacy did."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _int64_ptr(value: int | None, field: str) -> Any:
    """An optional integer passed by pointer (NULL = not given)."""
    return None if value is None else ctypes.byref(c_int64(_int(value, field)))


EVENT_LOG = logging.getLogger("tms.set_action")


def _log_event(_user_data: int | None, level: int, _event: bytes, line: bytes) -> None:
    """Set Action events from the library, into `logging` (logger "tms.set_action").

    The library's line starts with its own time and level; `logging` stamps those itself, so the
    record's message is the rest (`set_action_done | user=... | ...`). A formatter of
    `%(asctime)s | %(levelname)-8s | %(message)s` with datefmt `%Y-%m-%d %H:%M:%S` writes the
    legacy log's lines again.
    """
    try:
        text = line.decode("utf-8", "replace")
        parts = text.split(" | ", 2)
        EVENT_LOG.log(level, "%s", parts[2] if len(parts) == 3 else text)
    except Exception:  # never let a logging problem unwind into C
        pass


_EVENT_TRAMPOLINE = _native.EVENT_CALLBACK(_log_event)


#: The store options, in the order `Store` takes them (see `Store.__init__`).
STORE_OPTIONS: tuple[str, ...] = (
    "synchronous", "busy_timeout_ms", "journal_size_limit_bytes", "max_idle_connections", "max_page_count",
    "allowed_clusters", "request_timeout_s", "connect_timeout_s", "max_response_bytes", "interrupted_after_s",
    "audit_hmac_key", "ca_bundle", "create")


def _key_text(value: str | bytes | os.PathLike[str]) -> str | bytes:
    """A key's or checkpoint's text: as given, or read from a path (never echoed)."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, os.PathLike):
        with open(value, "rb") as f:
            return f.read(64 * 1024)
    raise InvalidInputError("expected the text (str or bytes) or a pathlib.Path")


class Store:
    """jobs.db and audit.db, opened once and shared by every thread of the process.

    Every failure raises the TmsError subclass of its status code with the library's message.
    Calls run without the GIL, concurrently. Set Action events go to the logger "tms.set_action".
    """

    def __init__(self, jobs_db: str | os.PathLike[str], audit_db: str | os.PathLike[str] | None = None, *,
                 synchronous: str | None = None, busy_timeout_ms: int | None = None,
                 journal_size_limit_bytes: int | None = None, max_idle_connections: int | None = None,
                 max_page_count: int | None = None, allowed_clusters: Iterable[str] | None = None,
                 request_timeout_s: int | None = None, connect_timeout_s: int | None = None,
                 max_response_bytes: int | None = None, interrupted_after_s: int | None = None,
                 audit_hmac_key: str | None = None, ca_bundle: str | os.PathLike[str] | None = None,
                 create: bool | None = None) -> None:
        """Open (creating or upgrading) the two files, or a PostgreSQL database when `jobs_db` is
        a URL (`postgresql://user:password@host:port/db?sslmode=...`; `audit_db` then None or the
        same URL: jobs and the audit log share the database). Options left as None keep their
        defaults; a value out of range raises InvalidInputError.

        synchronous: "FULL" (default: every acknowledged write survives power loss) or "NORMAL".
        busy_timeout_ms: how long to wait for another process's lock (5000; 0 to 600000).
        journal_size_limit_bytes: WAL size kept after a checkpoint (64 MiB; -1 to 2**40).
        max_idle_connections: kept open per file (8; 1 to 256).
        max_page_count: size cap per file in pages, 0 for none (0; 0 to 4294967294).
        allowed_clusters: base URLs Set Actions may call, e.g. ["https://cluster/tms/"] (none).
        request_timeout_s: a whole remote call (35; 1 to 3600).
        connect_timeout_s: connecting to a cluster (10; 1 to 3600).
        max_response_bytes: most of an answer read (8 MiB; 1 to 2**30).
        interrupted_after_s: a job IN_PROGRESS this long is marked interrupted (600; more than
            request_timeout_s, at most 30 days).
        audit_hmac_key: key of the audit chain's HMAC-SHA256, kept in memory only (16 to 4096
            bytes). A chain written with a key refuses appends from stores without it.
        ca_bundle: a PEM file of CA certificates trusted for https clusters, on top of the
            system's trust store.
        create: create the store when it is missing (True, the default: the app's first start
            creates its files, or its tables in a PostgreSQL schema). False opens an existing
            store only: a missing file, or a schema without the store's tables, raises
            CantOpenError naming it and nothing is created.

        A file or directory that cannot be written opens read-only: reads work, writes raise
        ReadOnlyError and Set Actions are refused (503) before anything is sent.
        """
        # close() waits for calls in flight: freeing the handle under a running call would be a
        # use-after-free in C. Set first, so __del__ works whatever fails below.
        self._calls = 0
        self._closing = False  # set by close(): only then does a finishing call notify
        # Calls take the plain lock (a C-level context manager); only close() uses the condition
        # built on it, so a call pays for no Python-level Condition methods.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._handle: int | None = None
        given: dict[str, Any] = dict(
            synchronous=synchronous, busy_timeout_ms=busy_timeout_ms,
            journal_size_limit_bytes=journal_size_limit_bytes, max_idle_connections=max_idle_connections,
            max_page_count=max_page_count, allowed_clusters=allowed_clusters,
            request_timeout_s=request_timeout_s, connect_timeout_s=connect_timeout_s,
            max_response_bytes=max_response_bytes, interrupted_after_s=interrupted_after_s,
            audit_hmac_key=audit_hmac_key, ca_bundle=None if ca_bundle is None else os.fspath(ca_bundle),
            create=None if create is None else bool(create))
        options = {k: (list(v) if k == "allowed_clusters" else v) for k, v in given.items() if v is not None}
        handle = c_void_p()
        check(
            lib.tms_store_open(
                encode(os.fspath(jobs_db), "jobs_db"),
                None if audit_db is None else encode(os.fspath(audit_db), "audit_db"),
                encode(json.dumps(options), "options") if options else None,
                ctypes.byref(handle),
            )
        )
        self._handle = handle.value
        self.jobs_db = jobs_db
        self.audit_db = audit_db
        try:
            check(lib.tms_store_set_event_callback(self._handle, _EVENT_TRAMPOLINE, None))
        except BaseException:
            self.close()
            raise

    def _enter(self) -> int:
        with self._lock:
            if self._handle is None:
                raise TmsError("the store is closed")
            self._calls += 1
            return self._handle

    def _leave(self) -> None:
        with self._lock:
            self._calls -= 1
            if self._calls == 0 and self._closing:
                self._idle.notify_all()

    def _call(self, fn: Any, *args: Any) -> None:
        handle = self._enter()
        try:
            check(fn(handle, *args))
        finally:
            self._leave()

    def _call_json(self, fn: Any, *args: Any) -> Any:
        handle = self._enter()
        try:
            return _from_json(call_json(fn, handle, *args))
        finally:
            self._leave()

    def _call_text(self, fn: Any, *args: Any) -> str:
        handle = self._enter()
        try:
            return call_json(fn, handle, *args)  # any `char **out` text, freed in call_json's finally
        finally:
            self._leave()

    def close(self) -> None:
        """Release the handle once no call is running. Closing twice is harmless."""
        with self._idle:
            self._closing = True
            while self._calls:
                self._idle.wait()
            handle, self._handle = self._handle, None
        if handle is not None:
            lib.tms_store_close(handle)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- jobs ---------------------------------------------------------------------------

    def create_job(self, user_id: str, action_code: int, action_name: str, cids: Iterable[str | int],
                   cluster_url: str | None = None, batch_id: str | None = None,
                   request_payload: Any = None, response_summary: Any = None,
                   status: str = "IN_PROGRESS") -> dict[str, Any]:
        """Create a job and its customers atomically; returns the legacy dict
        {job_id, user_id, action_code, action_name, customer_count, created_at}.
        request_payload is any JSON-able value (a dict, normally)."""
        ids = id_blob(cids, "cids")
        # The optional fields are usually None: no encode() call for them (this is the hot path).
        payload = None if request_payload is None else encode(_json_text(request_payload), "request_payload")
        summary = None if response_summary is None else encode(_summary_text(response_summary), "response_summary")
        # tms_create_job_packed writes into this instead of handing back strings to free and
        # JSON to parse; the rest of the answer is the arguments, as the library saw them.
        created = _native.CreatedJob()
        handle = self._enter()
        try:
            user = encode(user_id, "user_id")  # checked after _enter, as before: a closed store
            code = _action_code(action_code)  # is reported first
            name = encode(action_name, "action_name")
            check(lib.tms_create_job_packed(
                handle,
                user,
                code,
                name,
                ids,
                len(ids),
                None if cluster_url is None else encode(cluster_url, "cluster_url"),
                None if batch_id is None else encode(batch_id, "batch_id"),
                payload,
                summary,
                None if status == "IN_PROGRESS" else encode(status, "status"),  # NULL: the default
                ctypes.byref(created),
            ))
        finally:
            self._leave()
        return {
            "job_id": created.job_id.decode("ascii"),
            "user_id": user_id if type(user_id) is str else cast(bytes, user).decode("utf-8"),
            "action_code": code,
            "action_name": action_name if type(action_name) is str else cast(bytes, name).decode("utf-8"),
            "customer_count": created.customer_count,
            "created_at": created.created_at.decode("ascii"),
        }

    def update_job(self, job_id: str, status: str, http_status: int | None = None,
                   error_message: str | None = None, response_summary: Any = None) -> None:
        """Set status and the given fields; updated_at always changes. NotFoundError if absent."""
        self._call(
            lib.tms_update_job,
            encode(job_id, "job_id"),
            encode(status, "status"),
            _int64_ptr(http_status, "http_status"),
            encode(error_message, "error_message"),
            encode(_summary_text(response_summary), "response_summary"),
        )

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Every column of the job plus customer_count; NotFoundError if absent."""
        return self._call_json(lib.tms_get_job, encode(job_id, "job_id"))

    def get_user_jobs(self, user_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The user's jobs, newest first, with customer_count."""
        return self._call_json(lib.tms_get_user_jobs, encode(user_id, "user_id"), _limit(limit))

    def get_job_customers(self, job_id: str) -> list[str]:
        """The job's customer IDs, sorted; NotFoundError if the job is absent."""
        return self._call_json(lib.tms_get_job_customers, encode(job_id, "job_id"))

    # --- Set Action -----------------------------------------------------------------------

    def set_action(self, request: str | bytes | Mapping[str, Any], user_id: str, client_ip: str | None = None,
                   idempotency_key: str | None = None) -> tuple[int, dict[str, Any]]:
        """Handle one /proxy_fetch request body (a dict or its JSON text) for user_id: record the
        job, call the cluster, record the outcome and audit row. Returns (http_status, body) as
        the route should answer; refusals are answers too (4xx/5xx with "error_code")."""
        text = request if isinstance(request, (str, bytes)) else json.dumps(request)
        http_status = c_int32()
        body = self._call_json(
            lib.tms_set_action,
            encode(text, "request"),
            encode(user_id, "user_id"),
            encode(client_ip, "client_ip"),
            encode(idempotency_key, "idempotency_key"),
            ctypes.byref(http_status),
        )
        return http_status.value, body

    def recover_interrupted(self) -> int:
        """Mark jobs left IN_PROGRESS by a dead process FAILED; returns how many."""
        count = c_uint64()
        self._call(lib.tms_recover_interrupted, ctypes.byref(count))
        return count.value

    def hold_write_lock(self, file: str = "jobs", milliseconds: int = 1000) -> None:
        """Diagnostic: hold the write lock of "jobs" or "audit" for a while, writing nothing."""
        which = {"jobs": 0, "audit": 1}.get(file)
        if which is None:
            raise InvalidInputError(f"file must be 'jobs' or 'audit', not {file!r}")
        self._call(lib.tms_debug_hold_write_lock, which, _int(milliseconds, "milliseconds", 0, 2**32 - 1))

    # --- audit ----------------------------------------------------------------------------

    def record_audit(self, user_id: str, action_type: str, customer_ids: str | Iterable[str | int] | None = None,
                     ip_address: str | None = None, status: str = "success",
                     error_message: str | None = None, duration_ms: int | None = None) -> int:
        """Write one audit row; returns its id. A list of IDs is stored as a JSON array; a
        mapping is refused (legacy stored nothing for one either)."""
        if isinstance(customer_ids, dict):
            raise InvalidInputError("customer_ids must be a list of IDs or a string, not a dict")
        if customer_ids is not None and not isinstance(customer_ids, str):
            customer_ids = json.dumps(list(_native.id_list(customer_ids, "customer_ids")))
        row_id = c_int64()
        self._call(
            lib.tms_record_audit,
            encode(user_id, "user_id"),
            encode(action_type, "action_type"),
            encode(customer_ids, "customer_ids"),
            encode(ip_address, "ip_address"),
            encode(status, "status"),
            encode(error_message, "error_message"),
            _int64_ptr(duration_ms, "duration_ms"),
            ctypes.byref(row_id),
        )
        return row_id.value

    def audit_trail(self, limit: int = 50, user_id: str | None = None, action_type: str | None = None,
                    customer_id: str | None = None) -> list[dict[str, Any]]:
        """Audit rows newest first; customer_id matches whole IDs only."""
        return self._call_json(
            lib.tms_get_audit_trail,
            encode(user_id, "user_id"),
            encode(action_type, "action_type"),
            encode(customer_id, "customer_id"),
            _limit(limit),
        )

    def copy_into(self, dst: Store) -> dict[str, Any]:
        """Copy every job with its customers, the appstatus cache and every audit row (ids and
        hash chain as they are) into `dst`, e.g. from SQLite onto PostgreSQL. Safe to run again
        after an interruption. Returns the counts and dst's audit verification."""
        if not isinstance(dst, Store):
            raise InvalidInputError("dst must be a tms.Store")
        dst_handle = dst._enter()
        try:
            return self._call_json(lib.tms_store_copy_into, dst_handle)
        finally:
            dst._leave()

    def verify_audit(self, anchor: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check the audit hash chain. Returns {ok, checked, unchained, head, first_problem}.
        `anchor` is a head returned earlier ({"seq", "hash"}) to detect a cut tail."""
        seq = hash_ = None
        if anchor is not None:
            seq, hash_ = _int64_ptr(anchor["seq"], "anchor seq"), encode(anchor["hash"], "anchor hash")
        return self._call_json(lib.tms_verify_audit, seq, hash_)

    def adopt_unchained(self, reason: str) -> dict[str, Any]:
        """After a rollback to the legacy code and forward again: adopt into the audit chain the
        rows the legacy code appended after the chain's head (plain INSERTs, which verify_audit
        reports as inserted), with one chained `audit_adopt_unchained` row naming how many, their
        ids and `reason` (required, one line, at most 1000 bytes). No row is changed. Returns
        {adopted, ids, after_seq, marker_id, marker_seq}. Raises NotFoundError when nothing waits,
        AuditChainBrokenError when unchained rows sit inside the chain or the log fails
        verification elsewhere, AuditKeyMismatchError on a keyed log without its key."""
        return self._call_json(lib.tms_adopt_unchained, encode(reason, "reason"))

    def audit_checkpoint(self, signing_key: str | bytes | os.PathLike[str],
                         previous: str | bytes | os.PathLike[str] | None = None) -> str:
        """A signed checkpoint of the audit log's head (text, a C2SP signed note: the log's name,
        the head's chain seq and hash, the UTC time, an Ed25519 signature line), to ship somewhere
        this host cannot rewrite. `signing_key` is the private key's text as `tms keygen` wrote
        it, or the path of that file (a `pathlib.Path`); it is never quoted in an error.
        `previous` (text or path) is the last checkpoint this key signed, as shipped: the log
        must still extend it. The whole log is verified first: AuditChainBrokenError when it
        does not verify or no longer extends `previous` (nothing signed), CheckpointInvalidError
        when `previous` is not this key's, AuditKeyMismatchError on a keyed log without its key,
        NotFoundError before the first chained row, InvalidInputError for a key that is not one."""
        key = _key_text(signing_key)
        prior = None if previous is None else encode(_key_text(previous), "previous")
        return self._call_text(lib.tms_audit_checkpoint, encode(key, "signing_key"), prior)

    def verify_audit_checkpoint(self, checkpoint: str | bytes | os.PathLike[str],
                                public_key: str | bytes | os.PathLike[str]) -> dict[str, Any]:
        """Whether the audit log still extends a signed checkpoint (text, or a `pathlib.Path`).
        Returns verify_audit's dict plus "checkpoint": {origin, seq, hash, time}; "ok" is false
        when rows were cut from the end past it, a row before it changed or was inserted, or the
        chain was recomputed. Raises CheckpointInvalidError when its signature does not verify
        with `public_key` (text or path of `tms keygen`'s .pub file), it is malformed or of
        another log; InvalidInputError for a public key that is not one."""
        return self._call_json(lib.tms_verify_audit_checkpoint, encode(_key_text(checkpoint), "checkpoint"),
                               encode(_key_text(public_key), "public_key"))

    def metrics(self) -> str:
        """The store's metrics in the Prometheus text exposition format 0.0.4 (serve it as
        `text/plain; version=0.0.4`): jobs by status, audit rows and rows waiting in the outbox
        (read from the database now), and this process's Set Action calls by outcome and their
        durations (counted per process)."""
        return self._call_text(lib.tms_store_metrics)

    def action_types(self) -> list[str]:
        """The distinct action types recorded, sorted."""
        return self._call_json(lib.tms_get_action_types)

    def audit_stats(self) -> dict[str, Any]:
        """total_records, unique_users, unique_actions, successful_actions, failed_actions,
        success_rate_percent."""
        return self._call_json(lib.tms_get_audit_stats)

    def clear_audit_logs(self) -> int:
        """Clear the log as a recorded reset (an `audit_reset` row continues the chain);
        returns how many rows were deleted."""
        deleted = c_uint64()
        self._call(lib.tms_clear_audit_logs, ctypes.byref(deleted))
        return deleted.value

    # --- appstatus cache ------------------------------------------------------------------

    def cache_get(self, cid: str, app_name: str = "ALL", ttl_seconds: int = 1800) -> Any:
        """The cached data, or None when missing or older than ttl_seconds."""
        try:
            return self._call_json(
                lib.tms_cache_get, encode(cid, "cid"), encode(app_name, "app_name"),
                _int(ttl_seconds, "ttl_seconds"),
            )
        except NotFoundError:
            return None

    def cache_get_batch(self, cids: Iterable[str | int], app_name: str = "ALL",
                        ttl_seconds: int = 1800) -> dict[str, Any]:
        """{"hits": {cid: data}, "misses": [cid], "hit_count", "miss_count"} for many cids at once."""
        array, count = string_array(cids, "cids")
        return self._call_json(
            lib.tms_cache_get_batch, array, count, encode(app_name, "app_name"),
            _int(ttl_seconds, "ttl_seconds"),
        )

    def cache_put(self, cid: str, status_data: Any, app_name: str = "ALL", ttl_seconds: int = 1800) -> None:
        """Insert or replace the cached data (any JSON-able value)."""
        self._call(
            lib.tms_cache_put, encode(cid, "cid"), encode(app_name, "app_name"),
            encode(json.dumps(status_data), "status_data"), _int(ttl_seconds, "ttl_seconds"),
        )

    def cache_cleanup(self, ttl_seconds: int = 1800) -> int:
        """Delete entries cached more than ttl_seconds ago; returns how many."""
        deleted = c_uint64()
        self._call(lib.tms_cache_cleanup, _int(ttl_seconds, "ttl_seconds"), ctypes.byref(deleted))
        return deleted.value

    def cache_invalidate(self, cid: str | None = None, app_name: str | None = None) -> int:
        """Delete the entries of cid and/or app_name (None: any; both None clears the cache);
        returns how many."""
        deleted = c_uint64()
        self._call(
            lib.tms_cache_invalidate, encode(cid, "cid"), encode(app_name, "app_name"),
            ctypes.byref(deleted),
        )
        return deleted.value

    def cache_stats(self) -> dict[str, Any]:
        """total_entries, unique_cids, size_bytes, size_kb."""
        return self._call_json(lib.tms_cache_stats)


def _int(value: Any, field: str, lo: int = -(2**63), hi: int = 2**63 - 1) -> int:
    """An integer argument; out-of-range values become the library's range error, not an
    OverflowError from ctypes."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{field} must be an integer, not {value!r}") from None
    if not lo <= value <= hi:
        raise InvalidInputError(f"{field} {value} is out of range")
    return value


def _limit(limit: Any) -> int:
    return _int(limit, "limit")


def _action_code(code: Any) -> int:
    if type(code) is int and -(2**31) <= code <= 2**31 - 1:  # the usual case, without _int's calls
        return code
    return _int(code, "action_code", -(2**31), 2**31 - 1)
