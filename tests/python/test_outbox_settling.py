"""The outbox's clean-up rides along with later writes (src/storage/sqlite/settle.rs): a delivered
row leaves jobs.db with the next outcome (at NORMAL with the next batch), receipts stay, and an
explicit delivery (recover_interrupted, run at open) settles the rest. What these tests pin down
is when each step happens, and that a row left behind is delivered once and only removed. (That
the order holds across a power cut is test_power_loss.py's job.)"""

import signal
import threading
import sqlite3
import time

import tms
from conftest import TOKEN, cluster_options, python, rows, set_action_request


def request(cluster, n):
    return set_action_request(cluster, cids=[f"c{n}"])


def outbox(tmp_path):
    return rows(str(tmp_path / "jobs.db"), "SELECT delivery_key FROM audit_outbox ORDER BY id")


def receipts(tmp_path):
    return rows(str(tmp_path / "audit.db"), "SELECT delivery_key FROM audit_outbox_receipts")


def audit_count(tmp_path):
    return rows(str(tmp_path / "audit.db"), "SELECT COUNT(*) FROM audit_log")[0][0]


def pending_metric(store):
    line = next(l for l in store.metrics().splitlines() if l.startswith("tms_audit_outbox_pending "))
    return float(line.split()[1])


def open_store(tmp_path, cluster, **options):
    # SQLite only: on PostgreSQL an outcome and its audit row commit together, with no outbox.
    return tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), **cluster_options(cluster, **options))


def test_a_delivered_row_leaves_with_the_next_outcome_and_the_rest_at_the_next_open(cluster, tmp_path):
    s = open_store(tmp_path, cluster)
    try:
        assert s.set_action(request(cluster, 1), "alice")[0] == 200
        # Delivered (audit row + receipt in audit.db) but still in the outbox: no commit of its own.
        first = outbox(tmp_path)
        assert len(first) == 1 and receipts(tmp_path) == first
        assert audit_count(tmp_path) == 1
        assert pending_metric(s) == 0, "a delivered row is not waiting for the audit log"

        assert s.set_action(request(cluster, 2), "alice")[0] == 200
        second = outbox(tmp_path)
        assert len(second) == 1 and second != first, "the first row left with the second outcome"
        # Receipts stay (a backup copies jobs.db first, then audit.db).
        assert sorted(receipts(tmp_path)) == sorted(first + second)
        assert audit_count(tmp_path) == 2
    finally:
        s.close()
    # Closing writes nothing (it never waits for a lock); the next open settles.
    assert outbox(tmp_path) == second
    open_store(tmp_path, cluster).close()
    assert outbox(tmp_path) == [] and len(receipts(tmp_path)) == 2
    assert audit_count(tmp_path) == 2


def test_at_normal_rows_leave_in_batches_after_a_wal_sync(cluster, tmp_path):
    s = open_store(tmp_path, cluster, synchronous="NORMAL")
    try:
        for n in range(10):
            assert s.set_action(request(cluster, n), "bob")[0] == 200
        # Below the batch size nothing is removed: every row waits with its receipt.
        assert len(outbox(tmp_path)) == 10 and len(receipts(tmp_path)) == 10
        assert pending_metric(s) == 0
        for n in range(10, 40):
            assert s.set_action(request(cluster, n), "bob")[0] == 200
        # A batch went (after audit.db's WAL was synced): fewer rows wait than were delivered.
        assert len(outbox(tmp_path)) < 40
        assert audit_count(tmp_path) == 40
    finally:
        s.close()
    open_store(tmp_path, cluster, synchronous="NORMAL").close()
    assert outbox(tmp_path) == []
    assert audit_count(tmp_path) == 40


def test_closing_with_jobs_db_locked_does_not_wait(cluster, tmp_path):
    s = open_store(tmp_path, cluster, busy_timeout_ms=3000)
    assert s.set_action(request(cluster, 1), "dave")[0] == 200
    holder = sqlite3.connect(str(tmp_path / "jobs.db"), timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        s.close()
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert waited < 2.5, f"close waited {waited:.1f} s for jobs.db's lock"


KILLED_AFTER_DELIVERY = """
    import os, signal, sys
    import tms
    s = tms.Store(sys.argv[1], sys.argv[2], allowed_clusters=[sys.argv[3]])
    body = {"url": sys.argv[3] + "/tms/v1/set/action", "token": "settling-token-0123456789", "isPost": True,
            "contentType": "application/json", "postData": {"action": "PE-Enable", "cids": ["k1"]}}
    status, _ = s.set_action(body, "carol")
    print(status, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_row_left_by_a_killed_process_is_not_delivered_twice(cluster, tmp_path):
    proc = python(KILLED_AFTER_DELIVERY, tmp_path / "jobs.db", tmp_path / "audit.db", cluster.base)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert out.strip() == "200"
    # Killed before anything settled: the row is still in the outbox, with its receipt.
    assert len(outbox(tmp_path)) == 1 and receipts(tmp_path) == outbox(tmp_path)
    assert audit_count(tmp_path) == 1

    s = open_store(tmp_path, cluster)
    try:
        assert outbox(tmp_path) == [], "opening settled the receipted row"
        assert s.set_action(request(cluster, 9), "carol")[0] == 200
        assert audit_count(tmp_path) == 2, "the receipted row was not written again"
        check = s.verify_audit()
        assert check["ok"], check
    finally:
        s.close()
    assert all(k in receipts(tmp_path) for k in outbox(tmp_path)), "no outbox row without its receipt"


def test_a_backup_taken_while_rows_are_delivered_never_restores_an_audit_row_twice(tmp_path):
    # Store.backup_to copies jobs.db, then audit.db, while the app goes on. Rows delivered and
    # removed between the two copies must not come back from the copy's outbox without their
    # receipts (which is why receipts are kept). Refused Set Actions go through the outbox.
    live, copy = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    copy.mkdir()
    s = tms.Store(str(live / "jobs.db"), str(live / "audit.db"), allowed_clusters=["http://127.0.0.1:9"])

    def refused(n):
        status, _ = s.set_action({"url": "http://elsewhere.example/x", "token": TOKEN, "isPost": True,
                                  "contentType": "application/json", "postData": {"action": "PE-Enable", "cids": [f"r{n}"]}},
                                 "erin")
        assert status == 403

    def backup(name):
        src, dst = sqlite3.connect(str(live / name)), sqlite3.connect(str(copy / name))
        src.backup(dst)
        dst.close()
        src.close()

    try:
        refused(1)
        backup("jobs.db")
        refused(2)
        refused(3)
        backup("audit.db")
    finally:
        s.close()
    tms.Store(str(copy / "jobs.db"), str(copy / "audit.db")).close()  # restoring opens the copy
    restored = rows(str(copy / "audit.db"), "SELECT customer_ids FROM audit_log ORDER BY id")
    assert restored == [('["r1"]',), ('["r2"]',), ('["r3"]',)], restored


def test_at_full_concurrent_set_actions_keep_the_outbox_small(cluster, tmp_path):
    # Threads delivering together (group commit runs their deliveries in one batch) each report
    # what they saw; a row one of them committed must still leave with a later outcome whatever
    # order the reports come in, or every delivery reads an outbox that grows with every call.
    s = open_store(tmp_path, cluster)
    threads, calls = 16, 8
    statuses = []

    def worker(t):
        for n in range(calls):
            statuses.append(s.set_action(request(cluster, t * calls + n), "erin")[0])

    try:
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert statuses == [200] * threads * calls
        assert audit_count(tmp_path) == threads * calls
        # What stays is at most the rows delivered after the last outcomes: one per thread.
        left = outbox(tmp_path)
        assert len(left) <= threads, f"{len(left)} delivered rows never left the outbox"
        assert all(k in receipts(tmp_path) for k in left)
    finally:
        s.close()
