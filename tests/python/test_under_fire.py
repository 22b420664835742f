"""Proof under fire: threads, processes, fork, one SQLite per process, kill -9, and faults.

Sizes are the CI ones; TMS_STRESS=1 multiplies the crash rounds and process counts.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import tms
from conftest import CRASH_WRITER, ROOT, WAIT_UNTIL_LOCKED, WORKER, python, rows, wait_until_locked, write_lock_held

STRESS = os.environ.get("TMS_STRESS") == "1"
BINDINGS = os.path.join(ROOT, "bindings", "python")


def integrity(path):
    return rows(path, "PRAGMA integrity_check")


def test_eight_threads_create_4000_jobs_on_one_store(tmp_path):
    jobs_db = str(tmp_path / "jobs.db")
    store = tms.Store(jobs_db, str(tmp_path / "audit.db"))
    errors = []

    def worker(t):
        try:
            for i in range(500):
                store.create_job(f"t{t}", 1, "Trans-Begin", [f"{t}-{i}-a", f"{t}-{i}-b", f"{t}-{i}-c"])
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
    assert rows(jobs_db, "SELECT COUNT(*) FROM jobs") == [(4000,)]
    assert rows(jobs_db, "SELECT COUNT(*) FROM job_customers") == [(12000,)]
    assert rows(jobs_db, "SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_customers c WHERE c.job_id = j.job_id) != 3") == [(0,)]


def test_four_processes_of_four_threads(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    tms.Store(jobs_db, audit_db).close()
    procs_n, per_thread = (8, 250) if STRESS else (4, 60)
    env = dict(os.environ, PYTHONPATH=BINDINGS)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, jobs_db, audit_db, f"p{p}", str(per_thread)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(procs_n)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "locked" not in out + err
    total = procs_n * 4 * per_thread
    assert rows(jobs_db, "SELECT COUNT(*) FROM jobs") == [(total,)]
    assert rows(jobs_db, "SELECT COUNT(*) FROM job_customers") == [(2 * total,)]
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log") == [(total,)]
    assert integrity(jobs_db) == [("ok",)] and integrity(audit_db) == [("ok",)]


def db_fds(path):
    """This process's open descriptors on `path` itself (not its -wal or -shm)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found.add(int(fd))
        except OSError:
            pass
    return found


def test_children_forked_after_open_keep_using_the_store(tmp_path):
    jobs_db = str(tmp_path / "jobs.db")
    store = tms.Store(jobs_db, str(tmp_path / "audit.db"))
    store.create_job("parent", 1, "Trans-Begin", ["p0"])  # the pool now holds open connections
    assert db_fds(jobs_db), "the parent should hold connections before forking"
    go_r, go_w = os.pipe()
    children = []
    for c in range(3):
        pid = os.fork()
        if pid == 0:  # the gunicorn --preload pattern: the child uses the inherited store
            code = 0
            try:
                os.close(go_w)
                # SQLite state must not cross fork(): the library closed its connections before
                # the fork, so the child inherits no descriptor on the file...
                if db_fds(jobs_db):
                    code = 2
                os.read(go_r, 1)  # ...and writes only after the parent closed its own store
                for i in range(40):
                    store.create_job(f"child{c}", 1, "Trans-Begin", [f"c{c}-{i}", f"c{c}-{i}-b"])
                    store.record_audit(f"child{c}", "Trans-Begin", [f"c{c}-{i}"])
                    if i == 0 and not db_fds(jobs_db):
                        code = 3  # it opened connections of its own
                store.close()
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(go_r)
    # The parent keeps writing, then closes its store while the children still use theirs: a
    # parent that believed it was the last user would checkpoint and delete the WAL under them.
    store.create_job("parent", 1, "Trans-Begin", ["p1"])
    store.close()
    os.write(go_w, b"go" * 3)
    os.close(go_w)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert rows(jobs_db, "SELECT COUNT(*) FROM jobs") == [(122,)]
    assert rows(jobs_db, "SELECT COUNT(*) FROM job_customers") == [(242,)]
    assert rows(str(tmp_path / "audit.db"), "SELECT COUNT(*) FROM audit_log") == [(120,)]
    assert integrity(jobs_db) == [("ok",)]


FORK_WHILE_BUSY = """
import os, sys, threading, tms
store = tms.Store(sys.argv[1], sys.argv[2])
def hold():
    store.hold_write_lock("jobs", 4000)  # a connection is checked out during the fork
t = threading.Thread(target=hold)
t.start()
# Another process sees the lock held: the connection is checked out now.
import subprocess
subprocess.run([sys.executable, "-c", sys.argv[3], sys.argv[1]], check=True, timeout=60)
pid = os.fork()
if pid == 0:
    try:
        store.create_job("child", 1, "Trans-Begin", ["c1"])
        os._exit(10)
    except tms.TmsError as e:
        os._exit(11 if "forked" in str(e) else 12)
_, status = os.waitpid(pid, 0)
t.join()
store.create_job("parent", 1, "Trans-Begin", ["p1"])  # the parent is unaffected
print(os.waitstatus_to_exitcode(status))
"""


def test_a_fork_while_a_connection_is_in_use_poisons_the_child_copy(tmp_path):
    out = subprocess.run([sys.executable, "-c", FORK_WHILE_BUSY, str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"),
                          WAIT_UNTIL_LOCKED],
                         env=dict(os.environ, PYTHONPATH=BINDINGS), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "11", "the child should refuse the store with a clear error"
    assert rows(str(tmp_path / "jobs.db"), "SELECT user_id FROM jobs") == [("parent",)]


PROBE_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=0)
try:
    con.execute("BEGIN IMMEDIATE")
    print("acquired")
except sqlite3.OperationalError as e:
    print("locked" if "locked" in str(e) else f"error: {e}")
"""


def test_the_library_and_python_share_one_sqlite(tmp_path):
    """While the library holds jobs.db's write lock, Python's own sqlite3 opens and closes the
    same file in this process. With one SQLite in the process the lock survives and another
    process is kept out; a library with its own bundled SQLite would lose it (POSIX locks are per
    process and close() drops them all)."""
    jobs_db = str(tmp_path / "jobs.db")
    store = tms.Store(jobs_db, str(tmp_path / "audit.db"))
    store.create_job("u", 1, "Trans-Begin", ["c1"])
    holder = threading.Thread(target=store.hold_write_lock, args=("jobs", 8000))
    holder.start()
    wait_until_locked(jobs_db)
    con = sqlite3.connect(jobs_db)
    assert con.execute("SELECT COUNT(*) FROM jobs").fetchone() == (1,)
    con.close()
    probe = subprocess.run([sys.executable, "-c", PROBE_LOCK, jobs_db], capture_output=True, text=True, timeout=30)
    holder.join()
    store.close()
    assert probe.stdout.strip() == "locked", probe.stdout + probe.stderr


def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    tms.Store(jobs_db, audit_db).close()
    rng = random.Random(20261128)
    handed_jobs, handed_audits = [], []
    env = dict(os.environ, PYTHONPATH=BINDINGS)
    for round_no in range(60 if STRESS else 20):
        proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, jobs_db, audit_db, str(round_no)],
                                env=env, stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # it is writing now
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out = first + proc.stdout.read()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        for line in out.splitlines(keepends=True):
            parts = line.split()
            if not line.endswith("\n") or len(parts) != 2:
                continue  # cut by the kill: the writer never got to hand this one out
            kind, value = parts
            (handed_jobs if kind == "J" else handed_audits).append(value)
    assert len(handed_jobs) >= 20
    con = sqlite3.connect(jobs_db)
    for job_id in handed_jobs:
        assert con.execute("SELECT COUNT(*) FROM job_customers WHERE job_id = ?", (job_id,)).fetchone() == (5,)
    # No job without all its customers, acknowledged or not.
    assert con.execute("SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_customers c "
                       "WHERE c.job_id = j.job_id) != 5").fetchone() == (0,)
    con.close()
    audit_ids = {r[0] for r in rows(audit_db, "SELECT id FROM audit_log")}
    assert {int(a) for a in handed_audits} <= audit_ids
    assert integrity(jobs_db) == [("ok",)] and integrity(audit_db) == [("ok",)]


# --- faults ----------------------------------------------------------------------------------


def test_a_full_database_is_reported_and_keeps_what_was_written(tmp_path):
    jobs_db = str(tmp_path / "jobs.db")
    store = tms.Store(jobs_db, str(tmp_path / "audit.db"), max_page_count=40)
    created = 0
    with pytest.raises(tms.DatabaseFullError) as info:
        for i in range(10_000):
            store.create_job("u", 1, "Trans-Begin", [f"{i}-{k:040d}" for k in range(20)])
            created += 1
    assert info.value.status == 13 and "full" in str(info.value)
    assert created > 0
    assert len(store.get_user_jobs("u", 100_000)) == created  # still readable, nothing lost
    store.close()
    assert rows(jobs_db, "SELECT COUNT(*) FROM job_customers") == [(created * 20,)]
    assert integrity(jobs_db) == [("ok",)]


def test_a_directory_path_and_a_file_that_is_not_a_database(tmp_path):
    with pytest.raises(tms.CantOpenError) as info:
        tms.Store(str(tmp_path), str(tmp_path / "audit.db"))
    assert info.value.status == 11 and "directory" in str(info.value)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"PK\x03\x04 this is a zip file, not a database" * 200)
    before = junk.read_bytes()
    with pytest.raises(tms.NotADatabaseError) as info:
        tms.Store(str(junk), str(tmp_path / "audit.db"))
    assert info.value.status == 15
    assert junk.read_bytes() == before


def test_a_corrupted_page_is_reported_as_corrupt(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    with tms.Store(jobs_db, audit_db) as s:
        for i in range(300):
            s.create_job("u", 1, "Trans-Begin", [f"c{i}"])
        s.record_audit("u", "Trans-Begin", ["c1"])
    [(root, page_size)] = rows(jobs_db, "SELECT (SELECT rootpage FROM sqlite_schema WHERE name = 'jobs'), "
                                        "(SELECT page_size FROM pragma_page_size)")
    with open(jobs_db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    with tms.Store(jobs_db, audit_db) as s:
        with pytest.raises(tms.CorruptError) as info:
            s.get_user_jobs("u", 500)
        assert info.value.status == 14
        assert len(s.audit_trail()) == 1  # the other file is untouched


def test_a_lock_held_past_the_busy_timeout_is_busy(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    store = tms.Store(jobs_db, audit_db, busy_timeout_ms=300)
    store.create_job("u", 1, "Trans-Begin", ["c1"])
    # The holder keeps the lock until told to let go, however slow the machine is.
    with write_lock_held(jobs_db):
        start = time.monotonic()
        with pytest.raises(tms.BusyError) as info:
            store.create_job("u", 1, "Trans-Begin", ["c2"])
        waited = time.monotonic() - start
        assert info.value.status == 6 and "locked" in str(info.value)
        assert waited >= 0.25  # it did wait out the busy timeout first
    store.create_job("u", 1, "Trans-Begin", ["c3"])  # usable once the lock is gone
    store.close()
    assert rows(jobs_db, "SELECT cid FROM job_customers ORDER BY cid") == [("c1",), ("c3",)]
