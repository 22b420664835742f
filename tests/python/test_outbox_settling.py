"""The outbox's clean-up rides along with later writes (src/storage/sqlite/settle.rs): a delivered
row leaves jobs.db with the next outcome, its receipt leaves audit.db with the next delivery, and
closing the store settles the rest. What these tests pin down is when each step happens, and
that a row left behind by a crash is delivered once and only removed afterwards. (That the order
holds across a power cut is test_power_loss.py's job.)"""

import os
import signal
import subprocess
import sys
import textwrap

import tms
from conftest import ROOT, rows

TOKEN = "settling-token-0123456789"


def request(cluster, n):
    return {"url": cluster.base + "/tms/v1/set/action", "token": TOKEN, "isPost": True,
            "contentType": "application/json", "postData": {"action": "Trans-Begin", "cids": [f"c{n}"]}}


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
    return tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), allowed_clusters=[cluster.base],
                     request_timeout_s=5, connect_timeout_s=5, **options)


def test_a_delivered_row_leaves_with_the_next_outcome_and_its_receipt_with_the_next_delivery(cluster, tmp_path):
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
        # The first receipt went with the second delivery (its removal was committed at FULL).
        assert receipts(tmp_path) == second
        assert audit_count(tmp_path) == 2
    finally:
        s.close()
    assert outbox(tmp_path) == [] and receipts(tmp_path) == [], "closing settles the rest"
    assert audit_count(tmp_path) == 2


def test_at_normal_rows_leave_in_batches_after_a_wal_sync_and_close_settles_them(cluster, tmp_path):
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
    assert outbox(tmp_path) == [] and receipts(tmp_path) == []
    assert audit_count(tmp_path) == 40


KILLED_AFTER_DELIVERY = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[4])
    import tms
    s = tms.Store(sys.argv[1], sys.argv[2], allowed_clusters=[sys.argv[3]])
    body = {"url": sys.argv[3] + "/tms/v1/set/action", "token": "settling-token-0123456789", "isPost": True,
            "contentType": "application/json", "postData": {"action": "PE-Enable", "cids": ["k1"]}}
    status, _ = s.set_action(body, "carol")
    print(status, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_row_left_by_a_killed_process_is_not_delivered_twice(cluster, tmp_path):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", KILLED_AFTER_DELIVERY, str(tmp_path / "jobs.db"),
                           str(tmp_path / "audit.db"), cluster.base, os.path.join(ROOT, "bindings", "python")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "200"
    # Killed before anything settled: the row is still in the outbox, with its receipt.
    assert len(outbox(tmp_path)) == 1 and receipts(tmp_path) == outbox(tmp_path)
    assert audit_count(tmp_path) == 1

    s = open_store(tmp_path, cluster)
    try:
        assert s.set_action(request(cluster, 9), "carol")[0] == 200
        assert audit_count(tmp_path) == 2, "the receipted row was not written again"
        check = s.verify_audit()
        assert check["ok"], check
    finally:
        s.close()
    assert outbox(tmp_path) == [] and receipts(tmp_path) == []
