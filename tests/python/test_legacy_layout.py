"""The drop-ins inside an app laid out as the public legacy app is: a `src` package whose
`jobs.py` and `audit_db.py` become one line each, and whose own `src/audit.py` imports
`log_action` from `src.audit_db` (so that every audit write must reach the chain)."""

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, rows

BINDINGS = os.path.join(ROOT, "bindings", "python")
SHIM = "import sys, tms.{module}; sys.modules[__name__] = tms.{module}  # the library's drop-in\n"


@pytest.fixture
def legacy_app(tmp_path):
    """An app directory shaped like the legacy one, with the two modules switched."""
    app = tmp_path / "app"
    src = app / "src"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text('"""TMS dashboard."""\n')
    (src / "jobs.py").write_text(SHIM.format(module="jobs"))
    (src / "audit_db.py").write_text(SHIM.format(module="audit_db"))
    (src / "audit.py").write_text(textwrap.dedent('''
        """The app's own audit helpers, unchanged: they import from src.audit_db."""
        from src.audit_db import log_action

        def audit_action(user_id, action, customer_ids, ip="10.0.0.1"):
            return log_action(user_id, action, customer_ids, ip_address=ip, status="success")
    '''))
    return app


def run_in(app, code, **env):
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(app), BINDINGS]), **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=app, env=full,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_one_line_shims_route_every_write_through_the_library(legacy_app):
    out = run_in(legacy_app, """
        import json
        from src import jobs, audit_db
        from src.audit import audit_action
        from src.jobs import create_job, DB_PATH
        import tms
        assert jobs is tms.jobs and audit_db is tms.audit_db
        job = create_job("alice", 1, "Trans-Begin", ["c1", "c2"])
        row_id = audit_action("alice", "Trans-Begin", ["c1", "c2"])
        print(json.dumps([job["job_id"], row_id, DB_PATH]))
    """, TMS_JOBS_DB=str(legacy_app / "jobs.db"), TMS_AUDIT_DB=str(legacy_app / "audit.db"))
    job_id, row_id, db_path = json.loads(out.stdout)
    assert db_path == str(legacy_app / "jobs.db")
    [(chain_hash,)] = rows(str(legacy_app / "audit.db"), f"SELECT chain_hash FROM audit_log WHERE id = {row_id}")
    assert chain_hash and chain_hash.startswith("sha256:")  # the app's own helper reached the chain
    assert rows(str(legacy_app / "jobs.db"), f"SELECT COUNT(*) FROM job_customers WHERE job_id = '{job_id}'") == [(2,)]


def test_assigning_the_path_through_the_shim_moves_the_drop_in(legacy_app):
    run_in(legacy_app, f"""
        from src import jobs
        jobs.DB_PATH = {str(legacy_app / "elsewhere.db")!r}
        import tms.jobs
        assert tms.jobs.DB_PATH == jobs.DB_PATH
        assert jobs.create_job("u", 1, "Trans-Begin", ["c1"])
    """)
    assert rows(str(legacy_app / "elsewhere.db"), "SELECT COUNT(*) FROM jobs") == [(1,)]


def test_a_new_empty_database_is_announced_with_its_absolute_path(legacy_app, tmp_path):
    other = tmp_path / "started-elsewhere"
    other.mkdir()
    out = subprocess.run([sys.executable, "-c", "from src import jobs; jobs.get_user_jobs('u')"], cwd=other,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(legacy_app), BINDINGS])),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"created a new, empty jobs database at {other / 'jobs.db'}" in out.stderr
    assert "TMS_JOBS_DB" in out.stderr


def test_the_legacy_connection_helpers(tmp_path, monkeypatch):
    from tms import audit_db, jobs

    monkeypatch.setattr(jobs, "DB_PATH", str(tmp_path / "jobs.db"))
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", str(tmp_path / "audit.db"))
    audit_db.log_action("ann", "PE-Enable", ["c1"])
    conn = audit_db.get_db_connection()
    try:
        row = conn.execute("SELECT user_id, action_type FROM audit_log").fetchone()
        assert isinstance(row, sqlite3.Row) and row["user_id"] == "ann"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
    finally:
        conn.close()
    conn = jobs.sqlite3_connect()
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.parametrize("bad", [{"cid": "c9"}, ["n1", "n2"], None, 1.5])
def test_an_id_that_is_not_a_string_is_refused_not_stored_as_its_repr(tmp_path, monkeypatch, caplog, bad):
    from tms import audit_db, jobs

    monkeypatch.setattr(jobs, "DB_PATH", str(tmp_path / "jobs.db"))
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", str(tmp_path / "audit.db"))
    caplog.set_level(logging.ERROR)
    assert jobs.create_job("u", 1, "Trans-Begin", ["c1", bad]) is None
    assert "must be a string" in caplog.text
    assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM job_customers") == [(0,)]
    # An integer is an ID written as digits, as a CSV would give it.
    assert jobs.create_job("u", 1, "Trans-Begin", [42])["customer_count"] == 1
    assert audit_db.log_action("u", "Trans-Begin", {"c1": 1}) is None
    assert rows(str(tmp_path / "audit.db"), "SELECT COUNT(*) FROM audit_log") == [(0,)]


def test_a_database_deleted_under_the_app_is_recreated_by_initialize(tmp_path, monkeypatch):
    from tms import audit_db, jobs

    monkeypatch.setattr(jobs, "DB_PATH", str(tmp_path / "jobs.db"))
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", str(tmp_path / "audit.db"))
    jobs.initialize_jobs_database()
    assert jobs.create_job("u", 1, "Trans-Begin", ["c1"])
    for name in os.listdir(tmp_path):
        if name.startswith("jobs.db"):
            os.remove(tmp_path / name)
    jobs.initialize_jobs_database()  # as the legacy test script does after deleting the file
    assert os.path.exists(tmp_path / "jobs.db")
    assert jobs.create_job("u", 1, "Trans-Begin", ["c2"])
    assert rows(str(tmp_path / "jobs.db"), "SELECT cid FROM job_customers") == [("c2",)]
