"""The stores behind the drop-in modules: one per (jobs path, audit path), opened on first use
and kept for the life of the process (the legacy code opened a connection per call)."""

import os
import threading

from .store import Store

_stores = {}
_lock = threading.Lock()


def jobs_path():
    from . import jobs

    return jobs.DB_PATH


def audit_path():
    from . import audit_db

    return audit_db.AUDIT_DB_PATH


def store():
    """The store for the modules' current DB_PATH and AUDIT_DB_PATH."""
    key = (os.path.abspath(jobs_path()), os.path.abspath(audit_path()))
    found = _stores.get(key)
    if found is not None:
        return found
    with _lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = Store(*key)
        return found
