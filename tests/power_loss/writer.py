"""A writer for the power-loss rounds: one workload, each acknowledged write printed as a JSON
line on stdout (a pipe, not on the simulated device) right after the call returned success.

    python writer.py WORKLOAD --jobs J --audit A [--sync FULL|NORMAL|OFF] [--n N] [...]

Workloads: sqlite3 (Python's sqlite3, no libtms), create_job, update_job, record_audit,
set_action, upgrade (open a legacy v0 store, then create jobs), copy_into.
"""

import argparse
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

_ack_lock = threading.Lock()


def ack(**fields):
    line = (json.dumps(fields) + "\n").encode()
    with _ack_lock:
        os.write(1, line)  # unbuffered: a power cut right after still leaves the line in the pipe


def run_sqlite3(a):
    import sqlite3

    con = sqlite3.connect(a.db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={a.sync}")
    con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, tag TEXT NOT NULL, pad TEXT)")
    for i in range(a.n):
        cur = con.execute("INSERT INTO t(tag, pad) VALUES (?, ?)", (f"{a.tag}-{i}", "x" * 300))
        ack(id=cur.lastrowid, tag=f"{a.tag}-{i}")


#: Stores stay open until the process ends (a store dropped at the end of its function would be
#: closed, and its close checkpoints: --die-at-end must find them open).
OPEN = []


def open_store(a, **extra):
    import tms

    store = tms.Store(a.jobs, a.audit, synchronous=a.sync, **extra)
    OPEN.append(store)
    return store


def run_create_job(a, store=None):
    store = store or open_store(a)
    for i in range(a.n):
        cids = [f"{a.tag}-{i}-a", f"{a.tag}-{i}-b", f"{a.tag}-{i}-c"]
        job = store.create_job("alice", 1, "Trans-Begin", cids, request_payload={"i": i})
        ack(job=job["job_id"], cids=cids)


def run_update_job(a):
    store = open_store(a)
    jobs = json.load(open(a.jobs_list))
    for i in range(a.n):
        job = jobs[i % len(jobs)]
        store.update_job(job, "SUCCESS", http_status=200, error_message=f"u{i}")
        ack(job=job, seq=i)


def run_record_audit(a):
    store = open_store(a)
    for i in range(a.n):
        cid = f"{a.tag}-{i}"
        row = store.record_audit("alice", "power_loss_test", [cid], ip_address="10.0.0.9", duration_ms=i)
        ack(audit=row, cid=cid)


TOKEN = "power-loss-bearer-token-0123456789"


def run_set_action(a):
    store = open_store(a, allowed_clusters=[a.cluster], request_timeout_s=10, connect_timeout_s=10)

    def one(t, count):
        for i in range(count):
            cid = f"{a.tag}-{t}-{i}"
            path = "/fail" if i % 5 == 4 else "/tms/v1/set/action"
            body = {"url": a.cluster + path, "token": TOKEN, "isPost": True, "contentType": "application/json",
                    "postData": {"action": "PE-Enable", "cids": [cid]}}
            status, answer = store.set_action(body, "alice", "10.0.0.7")
            ack(job=answer.get("job_id"), status=status, cid=cid, answer_status=answer.get("status"),
                warning=answer.get("warning"), error_code=answer.get("error_code"))

    threads = [threading.Thread(target=one, args=(t, a.n // a.threads)) for t in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_upgrade(a):
    store = open_store(a)
    ack(opened=True)
    run_create_job(a, store)


def run_copy_into(a):
    import tms

    src = tms.Store(a.src_jobs, a.src_audit)
    OPEN.append(src)
    dst = open_store(a)
    result = src.copy_into(dst)
    ack(copied=result)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("--jobs")
    p.add_argument("--audit")
    p.add_argument("--db")
    p.add_argument("--sync", default="FULL")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--tag", default="pl")
    p.add_argument("--jobs-list")
    p.add_argument("--cluster")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--src-jobs")
    p.add_argument("--src-audit")
    p.add_argument("--die-at-end", action="store_true", help="SIGKILL itself after the last call, before any close")
    a = p.parse_args()
    globals()["run_" + a.workload](a)
    if a.die_at_end:
        os.kill(os.getpid(), 9)  # the app is still running when the power goes: nothing closed


if __name__ == "__main__":
    main()
