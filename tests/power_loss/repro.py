"""Deterministic reproducers of what the power-loss suite found (no random crash point).

    python tests/power_loss/repro.py backup        # tms backup exits 0; after the cut its audit.db is empty
    python tests/power_loss/repro.py set_action    # at NORMAL, outcomes survive without their audit row

Each prints what it finds and exits 1 when the problem shows (0 when it does not).
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "examples"))
os.environ.setdefault("TMS_LIB", os.path.join(ROOT, "target", "release", "libtms.so"))

import powerloss  # noqa: E402
import tms  # noqa: E402


def backup(d, shim):
    """`tms backup` runs to the end (exit 0) under the shim; then the power goes: every write
    it did not sync is lost. The destination is opened with SQLite's defaults (rollback journal,
    synchronous=FULL): the commit syncs the journal and the file, then deletes the journal
    without syncing the directory (SQLite syncs it only at synchronous=EXTRA). The deletion is
    lost, the journal is hot again, and the next open rolls the backup back to an empty file."""
    store = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"))
    for i in range(50):
        store.create_job("alice", 1, "Trans-Begin", [f"c{i}"])
        store.record_audit("alice", "repro", [f"c{i}"])
    store.close()
    run = powerloss.run_writer([os.path.join(ROOT, "target", "release", "tms"), "--jobs-db", os.path.join(d, "jobs.db"),
                                "--audit-db", os.path.join(d, "audit.db"), "backup", os.path.join(d, "backup")],
                               shim, os.path.join(d, "device"))
    print("tms backup exit status", run.returncode, "answer", json.dumps(run.acks)[:200])
    pending = powerloss.unsynced(powerloss.read_log(os.path.join(d, "device")))
    for r in pending:
        if "/backup/" in r.path:
            print("  not durable at exit:", {4: "create", 5: "delete", 1: "write"}.get(r.type, r.type), os.path.basename(r.path))
    powerloss.cut(os.path.join(d, "device"), "all")
    bad = 0
    for name in ("jobs.db", "audit.db"):
        path = os.path.join(d, "backup", name)
        con = sqlite3.connect(path)
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        con.close()
        print(f"  after the cut: backup/{name} {os.path.getsize(path)} bytes, tables {tables}")
        bad += not tables
    return bad


def set_action(d, shim):
    """20 Set Actions at synchronous=NORMAL, all answered 200; then the power goes, and jobs.db's
    unsynced writes happened to reach the disk while audit.db's did not (the page cache writes
    files back independently). Each outcome committed in jobs.db, its outbox row was delivered to
    audit.db and cleared in jobs.db: the clearing survived, the audit row did not."""
    from stub_cluster import StubCluster

    with StubCluster() as cluster:
        run = powerloss.run_writer([sys.executable, os.path.join(HERE, "writer.py"), "set_action",
                                    "--jobs", os.path.join(d, "jobs.db"), "--audit", os.path.join(d, "audit.db"),
                                    "--sync", "NORMAL", "--n", "20", "--cluster", cluster.base, "--die-at-end"],
                                   shim, os.path.join(d, "device"))
    print("answers:", sorted({a["status"] for a in run.acks}), len(run.acks), "Set Actions")
    powerloss.cut(os.path.join(d, "device"), "all", reached_disk=lambda p: re.search(r"/jobs\.db(-wal)?$", p))
    store = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"))
    store.recover_interrupted()
    store.close()
    con = sqlite3.connect(os.path.join(d, "jobs.db"))
    outcomes = con.execute("SELECT COUNT(*) FROM jobs WHERE status != 'IN_PROGRESS'").fetchone()[0]
    outbox = con.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()[0]
    con.close()
    con = sqlite3.connect(os.path.join(d, "audit.db"))
    audit_rows = con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    con.close()
    print(f"after the cut and a reopen: {outcomes} outcomes in jobs.db, {outbox} rows in its outbox, "
          f"{audit_rows} audit rows in audit.db")
    return outcomes - audit_rows if outcomes > audit_rows else 0


def main():
    what = sys.argv[1]
    shim = powerloss.build_shim()
    d = tempfile.mkdtemp(prefix="powerloss-repro-")
    try:
        bad = {"backup": backup, "set_action": set_action}[what](d, shim)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("PROBLEM SHOWS" if bad else "no problem")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
