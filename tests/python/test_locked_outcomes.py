"""SQLite: a Set Action's outcome arrives while another process (here: another store) holds the
files' write locks past the busy timeout. Whatever stays locked, the outcome and its audit row are
never lost nor written twice, and what the answer's warning says about the audit row is true."""

import threading
import time

import pytest

import tms
from conftest import rows
from stub_cluster import StubCluster

TOKEN = "operator-token-0123456789"
pytestmark = pytest.mark.sqlite_only


def slow_action(tmp_path, locked, hold_ms):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    with StubCluster(slow_seconds=1.0) as cluster:
        s = tms.Store(jobs_db, audit_db, allowed_clusters=[cluster.base], busy_timeout_ms=50, request_timeout_s=5)
        holder = tms.Store(jobs_db, audit_db)
        lockers = [threading.Thread(target=holder.hold_write_lock, args=(f, hold_ms)) for f in locked]
        answer = {}
        t = threading.Thread(target=lambda: answer.setdefault("v", s.set_action(
            {"url": cluster.base + "/slow", "token": TOKEN, "isPost": True,
             "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "alice")))
        t.start()
        while not cluster.requests:
            time.sleep(0.01)
        for locker in lockers:
            locker.start()
        t.join()
        status, body = answer["v"]
        audit_rows_at_answer = rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'")[0][0]
        for locker in lockers:
            locker.join()
        holder.close()
        return s, status, body, audit_rows_at_answer, jobs_db, audit_db


def test_both_files_locked_past_the_busy_timeout_keep_the_outcome_and_its_audit_row_in_memory(tmp_path):
    s, status, body, at_answer, jobs_db, audit_db = slow_action(tmp_path, ("jobs", "audit"), 3500)
    assert status == 200 and body["status"] == "success", body
    assert "could not be recorded yet" in body["warning"], body
    assert "its audit row could not be written either and waits with it" in body["warning"], body
    assert at_answer == 0
    job_id = body["job_id"]
    assert rows(jobs_db, f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("IN_PROGRESS",)]
    # The locks are gone: the next call of the store records both, once.
    s.recover_interrupted()
    assert rows(jobs_db, f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("SUCCESS",)]
    assert rows(audit_db, "SELECT status FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [("success",)]
    s.recover_interrupted()
    s.close()  # close records nothing twice either
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [(1,)]
    assert rows(jobs_db, "SELECT COUNT(*) FROM audit_outbox") == [(0,)]
    with tms.Store(jobs_db, audit_db) as again:
        assert again.verify_audit()["ok"]


def test_jobs_db_locked_alone_writes_the_audit_row_when_the_answer_says_so(tmp_path):
    s, status, body, at_answer, jobs_db, audit_db = slow_action(tmp_path, ("jobs",), 3500)
    assert status == 200 and "its audit row was written" in body["warning"], body
    assert at_answer == 1  # true when the answer said it
    s.recover_interrupted()
    s.close()
    assert rows(jobs_db, f"SELECT status FROM jobs WHERE job_id = '{body['job_id']}'") == [("SUCCESS",)]
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [(1,)]


def test_audit_db_locked_alone_commits_the_outcome_and_delivers_the_audit_row_later(tmp_path):
    s, status, body, at_answer, jobs_db, audit_db = slow_action(tmp_path, ("audit",), 3500)
    assert status == 200 and "warning" not in body, body  # the outcome is durable, the row in the outbox
    assert rows(jobs_db, f"SELECT status FROM jobs WHERE job_id = '{body['job_id']}'") == [("SUCCESS",)]
    assert at_answer + rows(jobs_db, "SELECT COUNT(*) FROM audit_outbox")[0][0] == 1
    s.recover_interrupted()
    s.close()
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [(1,)]
