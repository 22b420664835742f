"""The drop-ins inside an app laid out as the public legacy app is: a `src` package whose
`jobs.py` and `audit_db.py` become one line each, and whose own `src/audit.py` imports
`log_action` from `src.audit_db` (so that every audit write must reach the chain)."""

import json
import logging
import os
import sqlite3
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, rows

BINDINGS = os.path.join(ROOT, "bindings", "python")


def readme_block(first_line):
    """The README's ```python block whose first line is `first_line`, without that line: what a
    maintainer pastes, so the tests run exactly the text the README shows."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(found) == 1, f"README has {len(found)} python blocks starting {first_line!r}"
    return found[0][len(first_line) + 1:]


SHIMS = {"jobs": readme_block("# src/jobs.py"), "audit_db": readme_block("# src/audit_db.py")}


@pytest.fixture
def legacy_app(tmp_path):
    """An app directory shaped like the legacy one, with the two modules switched."""
    app = tmp_path / "app"
    src = app / "src"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text('"""TMS dashboard."""\n')
    (src / "jobs.py").write_text(SHIMS["jobs"])
    (src / "audit_db.py").write_text(SHIMS["audit_db"])
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


def run_elsewhere(app, where, code, **env):
    """Run `code` as an app started from another directory would (systemd, gunicorn --chdir)."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(app), BINDINGS]), **env)
    for name in ("TMS_JOBS_DB", "TMS_AUDIT_DB"):
        if name not in env:
            full.pop(name, None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=where, env=full,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_shims_open_the_legacy_files_in_the_app_root_from_any_directory(legacy_app, tmp_path, fixture_copy):
    # The app's real data sits where the legacy modules kept it: beside src/.
    shutil.copy(fixture_copy("jobs.db"), legacy_app / "jobs.db")
    shutil.copy(fixture_copy("audit.db"), legacy_app / "audit.db")
    elsewhere = tmp_path / "started-elsewhere"
    elsewhere.mkdir()
    out = run_elsewhere(legacy_app, elsewhere, """
        import json
        from src import jobs, audit_db
        print(json.dumps([jobs.DB_PATH, audit_db.AUDIT_DB_PATH, len(jobs.get_user_jobs("test_user_001", 500)),
                          audit_db.get_audit_stats()["total_records"]]))
    """)
    db_path, audit_path, job_count, audit_count = json.loads(out.stdout)
    assert (db_path, audit_path) == (str(legacy_app / "jobs.db"), str(legacy_app / "audit.db"))
    assert job_count > 0 and audit_count == 7  # the app's own rows, not a new empty store
    assert "created a new" not in out.stderr
    assert sorted(os.listdir(elsewhere)) == []  # nothing created in the working directory
    # The environment still wins.
    out = run_elsewhere(legacy_app, elsewhere, "from src import jobs; print(jobs.DB_PATH)",
                        TMS_JOBS_DB=str(tmp_path / "chosen.db"))
    assert out.stdout.strip() == str(tmp_path / "chosen.db")


def test_a_new_empty_database_is_announced_with_its_absolute_path(legacy_app, tmp_path):
    other = tmp_path / "started-elsewhere"
    other.mkdir()
    out = run_elsewhere(legacy_app, other, "from src import jobs; jobs.get_user_jobs('u')")
    assert f"created a new, empty jobs database at {legacy_app / 'jobs.db'}" in out.stderr
    assert "TMS_JOBS_DB" in out.stderr


# The legacy app's shape around its route: its own auth decorator and get_client_ip(request) in
# src/audit.py, Flask's session, its modules imported by name. The route itself is the README's.
LEGACY_APP_PY = """
import functools, os
from flask import Flask, jsonify, request, session
from src.audit import get_client_ip
from src.jobs import initialize_jobs_database, get_user_jobs
from src.audit_db import initialize_database, log_action

app = Flask(__name__)
app.secret_key = "test-only"
initialize_jobs_database()
initialize_database()


def require_auth(f):
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        if "user_id" not in session:
            return jsonify({"success": False, "message": "login required"}), 401
        return f(*args, **kwargs)
    return wrapped


@app.route("/api/login", methods=["POST"])
def login():
    session["user_id"] = request.get_json()["username"]
    log_action(session["user_id"], "login", ip_address=get_client_ip(request))
    return jsonify({"success": True})


@app.route("/api/jobs/mine")
@require_auth
def my_jobs():
    return jsonify({"success": True, "jobs": get_user_jobs(session["user_id"])})

"""

AUDIT_PY_CLIENT_IP = """

def get_client_ip(request):
    forwarded = request.environ.get("HTTP_X_FORWARDED_FOR")
    return forwarded.split(",")[0] if forwarded else (request.remote_addr or "unknown")
"""


def test_the_readme_route_pasted_into_the_legacy_layout_works_with_an_hmac_key(legacy_app, tmp_path):
    """The README's route, pasted into an app of the legacy layout and configured only through
    the environment (an HMAC key file, the allowlist), answers Set Actions from the same store as
    the drop-ins: one pool, one key, the files in the app root."""
    from stub_cluster import StubCluster

    (legacy_app / "app.py").write_text(LEGACY_APP_PY + readme_block("# app.py"))
    with open(legacy_app / "src" / "audit.py", "a") as f:
        f.write(AUDIT_PY_CLIENT_IP)
    key_file = tmp_path / "audit.key"
    key_file.write_text("k" * 32 + "\n")
    elsewhere = tmp_path / "gunicorn-cwd"
    elsewhere.mkdir()
    with StubCluster() as cluster:
        out = run_elsewhere(legacy_app, elsewhere, f"""
            import json, logging, tms, tms._shared
            from app import app
            client = app.test_client()
            assert client.post("/api/login", json={{"username": "alice"}}).status_code == 200
            body = {{"url": {cluster.base!r} + "/tms/v1/set/action", "token": "operator-token-123", "isPost": True,
                     "postData": {{"action": "PE-Enable", "cids": ["c1", "c2"]}}}}
            resp = client.post("/proxy_fetch", json=body, headers={{"X-Forwarded-For": "10.9.8.7, 10.0.0.1"}})
            refused = client.post("/proxy_fetch", json={{**body, "url": "https://elsewhere.invalid/tms/"}})
            mine = client.get("/api/jobs/mine").get_json()["jobs"]
            print(json.dumps([resp.status_code, resp.get_json(), refused.status_code, refused.get_json(),
                              [j["job_id"] for j in mine], len(tms._shared._stores),
                              tms.shared_store() is tms._shared.store()]))
        """, TMS_AUDIT_HMAC_KEY_FILE=str(key_file), TMS_ALLOWED_CLUSTERS=cluster.base + "/tms/")
    status, answer, refused_status, refused, mine, stores, same = json.loads(out.stdout.splitlines()[-1])
    assert status == 200 and answer["status"] == "success", answer
    assert mine == [answer["job_id"]]
    assert refused_status == 403 and "TMS_ALLOWED_CLUSTERS" in refused["message"]
    assert stores == 1 and same  # the route and the drop-ins share one store
    # The Set Action's events reached stderr in the legacy line format (no logging configured).
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| INFO     \| set_action_done \| user=alice",
                     out.stderr, re.M), out.stderr
    # Files in the app root, every row on one HMAC-keyed chain (login, Set Action, refusal).
    import tms
    assert not os.listdir(elsewhere)
    with tms.Store(str(legacy_app / "jobs.db"), str(legacy_app / "audit.db"), audit_hmac_key="k" * 32) as s:
        check = s.verify_audit()
        assert check["ok"] and check["checked"] == 3 and check["unchained"] == 0, check
        trail = s.audit_trail(10)
        assert [r["action_type"] for r in trail] == ["PE-Enable", "PE-Enable", "login"]
        assert trail[1]["ip_address"] == "10.9.8.7"


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


def test_shared_store_logs_events_only_where_the_app_configured_no_logging(legacy_app, tmp_path):
    code = """
        import logging, sys, tms
        {setup}
        tms.shared_store()
        tms.shared_store()
        events = logging.getLogger("tms.set_action")
        print(len(events.handlers), events.level, events.propagate)
        logging.basicConfig(level=logging.INFO, format="ROOT %(message)s")  # the app, later
        events.info("set_action_done | user=u")
    """
    out = run_elsewhere(legacy_app, tmp_path, code.format(setup=""))
    assert out.stdout.split() == ["1", "20", "False"]  # one stderr handler, INFO, added once
    assert out.stderr.count("set_action_done | user=u") == 1, out.stderr  # never printed twice
    out = run_elsewhere(legacy_app, tmp_path, code.format(setup="logging.basicConfig(level=logging.WARNING)"))
    assert out.stdout.split() == ["0", "0", "True"]  # the app's own configuration is left alone


def test_one_shim_alone_keeps_both_files_in_the_app_root(legacy_app, tmp_path):
    """A script importing only src.jobs (the legacy test scripts do) must not open an audit.db in
    its working directory, nor a second store when src.audit_db comes later."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    for first, second in (("jobs", "audit_db"), ("audit_db", "jobs")):
        out = run_elsewhere(legacy_app, elsewhere, f"""
            import json, tms, tms._shared
            import src.{first}
            tms.shared_store()
            import src.{second}
            tms.shared_store()
            print(json.dumps([tms.jobs.DB_PATH, tms.audit_db.AUDIT_DB_PATH, len(tms._shared._stores)]))
        """)
        assert json.loads(out.stdout) == [str(legacy_app / "jobs.db"), str(legacy_app / "audit.db"), 1], out.stdout
        assert os.listdir(elsewhere) == []
