"""Python binding of libtms, the TMS dashboard's job-and-audit store (ctypes, standard library only).

    import tms
    store = tms.Store("jobs.db", "audit.db", synchronous="FULL")
    job = store.create_job("alice", tms.get_action_code("Trans-Begin"), "Trans-Begin", ["c1", "c2"])

Drop-in replacements for the legacy modules are `tms.jobs` and `tms.audit_db`; `tms.shared_store()`
is the one Store they use, for the app's own routes.
"""

from __future__ import annotations

import ctypes
import json

from . import _native
from ._native import check, encode, lib
from ._version import __version__
from .errors import *  # noqa: F401,F403  (the exception classes are part of the API)
from .errors import TmsError, UnknownActionError
from ._shared import configure, shared_store
from .store import STORE_OPTIONS, Store

__all__ = ["STORE_OPTIONS", "Store", "TmsError", "__version__", "configure", "get_action_code",
           "map_action", "parse_customer_ids", "shared_store", "version"]


def version() -> str:
    """The loaded library's version string (always equal to `tms.__version__`: the loader
    refuses any other)."""
    return lib.tms_version().decode()


def map_action(name: str) -> int:
    """The code of a Set Action name (case-insensitive, `-`, `_` and spaces ignored);
    raises UnknownActionError for a name not in the table."""
    code = ctypes.c_int32()
    check(lib.tms_map_action(encode(name, "name"), ctypes.byref(code)))
    return code.value


def get_action_code(name: str | None) -> int | None:
    """The code of a Set Action name, or None when unknown (the app's legacy helper)."""
    if name is None:
        return None
    try:
        return map_action(name)
    except (UnknownActionError, ValueError):
        return None


def parse_customer_ids(text: str, csv: bool = False) -> list[str]:
    """Pasted text (lines or commas) or CSV text (first column, optional header) as a list of
    trimmed, de-duplicated IDs in first-seen order."""
    fmt = _native.INPUT_CSV if csv else _native.INPUT_MANUAL
    return json.loads(_native.call_json(lib.tms_parse_customer_ids, encode(text, "text"), fmt))
