"""tms.jobs and tms.audit_db as drop-in replacements of the legacy modules."""

import importlib
import inspect
import logging
import os
import subprocess
import sys

import pytest

from conftest import ROOT, rows

import tms
from tms import audit_db, jobs

LEGACY_SIGNATURES = {
    jobs: {
        "initialize_jobs_database": "()",
        "create_job": "(user_id, action_code, action_name, cids, cluster_url=None, batch_id=None, "
                      "request_payload=None, response_summary=None, status='IN_PROGRESS')",
        "update_job": "(job_id, status, http_status=None, error_message=None, response_summary=None)",
        "get_user_jobs": "(user_id, limit=50)",
        "get_job_customers": "(job_id)",
        "get_job_details": "(job_id)",
        "get_cached_appstatus": "(cid, app_name='ALL', ttl_seconds=1800)",
        "cache_appstatus": "(cid, status_data, app_name='ALL', ttl_seconds=1800)",
        "cleanup_expired_cache": "(ttl_seconds=1800)",
        "get_cached_appstatus_batch": "(cids, app_name='ALL', ttl_seconds=1800)",
        "invalidate_appstatus_cache": "(cid=None, app_name=None)",
        "get_cache_stats": "()",
        "get_action_code": "(name)",
    },
    audit_db: {
        "initialize_database": "()",
        "log_action": "(user_id, action_type, customer_ids=None, ip_address=None, status='success', "
                      "error_message=None, duration_ms=None)",
        "log_user_action": "(user_id, action_type, customer_ids=None, ip_address=None, "
                           "status='success', error_message=None, duration_ms=None)",
        "get_audit_trail": "(limit=50, user_id=None, action_type=None, customer_id=None)",
        "get_user_actions": "(user_id, limit=50)",
        "get_customer_actions": "(customer_id, limit=50)",
        "get_action_types": "()",
        "get_audit_stats": "()",
        "clear_audit_logs": "()",
    },
}


@pytest.fixture
def paths(dropin_paths):
    return dropin_paths


def _without_annotations(fn):
    """A signature's names, kinds and defaults: what a legacy caller depends on (the type hints
    added since are not part of the legacy contract)."""
    sig = inspect.signature(fn)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize("module", [jobs, audit_db], ids=["jobs", "audit_db"])
def test_every_legacy_function_has_the_legacy_signature(module):
    for name, sig in LEGACY_SIGNATURES[module].items():
        assert _without_annotations(getattr(module, name)) == sig, name
    assert tms.get_action_code("PE-Direct") == 5


def test_jobs_module_return_shapes(paths):
    jobs.initialize_jobs_database()
    job = jobs.create_job("alice", 2, "PE-Enable", ["c1", "c1", "c2"], batch_id="b1",
                          request_payload={"action": "PE-Enable", "cids": ["c1", "c2"]})
    assert set(job) == {"job_id", "user_id", "action_code", "action_name", "customer_count", "created_at"}
    assert job["customer_count"] == 2
    assert jobs.update_job(job["job_id"], "SUCCESS", 200, response_summary={"success": True}) is True
    [listed] = jobs.get_user_jobs("alice")
    assert set(listed) == {"job_id", "user_id", "action_code", "action_name", "cluster_url",
                           "created_at", "status", "http_status", "error_message", "customer_count"}
    assert listed["http_status"] == 200
    details = jobs.get_job_details(job["job_id"])
    assert set(details) == {"job_id", "user_id", "batch_id", "action_code", "action_name",
                            "cluster_url", "created_at", "request_payload", "response_summary",
                            "status", "customer_count"}
    assert details["request_payload"]["cids"] == ["c1", "c2"]
    assert details["response_summary"] == '{"success": true}'
    assert jobs.get_job_customers(job["job_id"]) == ["c1", "c2"]


def test_failures_keep_the_legacy_returns_and_log_the_message(paths, caplog):
    caplog.set_level(logging.ERROR)
    assert jobs.create_job("", 1, "Trans-Begin", ["c1"]) is None
    assert "user_id is empty" in caplog.text
    assert jobs.update_job("missing", "FAILED") is False
    assert jobs.get_job_details("missing") is None
    assert jobs.get_job_customers("missing") == []
    assert jobs.get_user_jobs("u", limit=-3) == []
    assert jobs.cache_appstatus("c1", {"a": 1}, ttl_seconds=-1) is False
    assert audit_db.log_action("", "Trans-Begin") is None
    assert audit_db.get_audit_trail(limit=-1) == []
    assert paths.rows("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_audit_module_whole_ids_and_tracked_actions(paths, caplog):
    rid = audit_db.log_action("ann", "Trans-Begin", ["c1", "c2"], "10.1.1.1", duration_ms=7)
    assert isinstance(rid, int)
    stored = paths.rows("SELECT customer_ids FROM audit_log")
    assert stored == [('["c1", "c2"]',)]  # the legacy json.dumps layout
    caplog.set_level(logging.WARNING)
    audit_db.log_user_action("ann", "Unknown-Thing", "c10")
    assert "untracked action" in caplog.text
    assert audit_db.TRACKED_ACTIONS == ["Trans-Begin", "PE-Enable", "T-Enable", "PE-Finalize", "PE-Direct"]
    assert [r["id"] for r in audit_db.get_customer_actions("c1")] == [rid]
    assert len(audit_db.get_user_actions("ann")) == 2
    assert audit_db.get_action_types() == ["Trans-Begin", "Unknown-Thing"]
    assert audit_db.get_audit_stats()["total_records"] == 2
    assert audit_db.clear_audit_logs() is True


def test_cache_functions(paths):
    assert jobs.cache_appstatus("c1", {"s": "ok"}) is True
    assert jobs.get_cached_appstatus("c1") == {"s": "ok"}
    assert jobs.get_cached_appstatus("c1", app_name="OTHER") is None
    assert jobs.get_cached_appstatus_batch(["c1", "c9"])["misses"] == ["c9"]
    assert jobs.cleanup_expired_cache() == 0
    assert jobs.get_cache_stats()["unique_cids"] == 1
    assert jobs.invalidate_appstatus_cache(cid="c1") == 1


@pytest.mark.sqlite_only
def test_legacy_fixture_files_through_the_dropin_modules(fixture_copy, monkeypatch):
    monkeypatch.setattr(jobs, "DB_PATH", fixture_copy("jobs.db"))
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", fixture_copy("audit.db"))
    legacy_columns = ("job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, "
                      "request_payload, response_summary, status, http_status, error_message, updated_at")
    before = rows(jobs.DB_PATH, f"SELECT {legacy_columns} FROM jobs ORDER BY rowid")
    legacy_trail = rows(audit_db.AUDIT_DB_PATH, "SELECT * FROM audit_log ORDER BY id")
    assert len(jobs.get_user_jobs("test_user_001", 500)) > 0
    assert len(audit_db.get_audit_trail(limit=500)) == len(legacy_trail)
    assert jobs.create_job("new", 1, "Trans-Begin", ["x1"]) is not None
    after = rows(jobs.DB_PATH, f"SELECT {legacy_columns} FROM jobs ORDER BY rowid")
    assert after[: len(before)] == before and len(after) == len(before) + 1


@pytest.mark.sqlite_only
def test_v0_fixture_through_the_dropin_modules(fixture_copy, monkeypatch, tmp_path):
    monkeypatch.setattr(jobs, "DB_PATH", fixture_copy("jobs_v0_user_fk.db", "v0.db"))
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", str(tmp_path / "audit.db"))
    job = jobs.create_job("anyone", 3, "T-Enable", ["a", "b"])
    assert job is not None and job["customer_count"] == 2
    assert rows(jobs.DB_PATH, "SELECT COUNT(*) FROM jobs") == [(16,)]


@pytest.mark.sqlite_only
def test_environment_variables_choose_the_files(tmp_path):
    code = (
        "from tms import jobs, audit_db\n"
        "print(jobs.DB_PATH, audit_db.AUDIT_DB_PATH)\n"
        "assert jobs.create_job('env', 1, 'Trans-Begin', ['c1'])\n"
        "assert audit_db.log_action('env', 'Trans-Begin')\n"
    )
    env = dict(os.environ, TMS_JOBS_DB=str(tmp_path / "j.db"), TMS_AUDIT_DB=str(tmp_path / "a.db"),
               PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "j.db"), str(tmp_path / "a.db")]
    assert rows(str(tmp_path / "j.db"), "SELECT user_id FROM jobs") == [("env",)]
    assert rows(str(tmp_path / "a.db"), "SELECT user_id FROM audit_log") == [("env",)]


def test_a_postgresql_url_in_tms_jobs_db_moves_both_modules_onto_the_server(tmp_path):
    """The drop-ins on PostgreSQL: TMS_JOBS_DB holds the URL (TMS_AUDIT_DB is not needed)."""
    from conftest import Location

    loc = Location(tmp_path, engine="postgres")
    try:
        code = (
            "from tms import jobs, audit_db\n"
            "assert jobs.create_job('env', 1, 'Trans-Begin', ['c1'])\n"
            "assert audit_db.log_action('env', 'Trans-Begin')\n"
            "assert audit_db.get_audit_stats()['total_records'] == 1\n"
        )
        env = dict(os.environ, TMS_JOBS_DB=loc.jobs, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
        env.pop("TMS_AUDIT_DB", None)
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert loc.rows("SELECT user_id FROM jobs") == [("env",)]
        assert loc.rows("SELECT user_id FROM audit_log") == [("env",)]
    finally:
        loc.drop()
