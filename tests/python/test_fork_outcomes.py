"""A Set Action's outcome kept waiting (both files locked past the busy timeout) when the
process forks: only the process that kept it records it, so its audit row is written once."""

import json
import os
import subprocess
import sys

from conftest import ROOT, rows

SCRIPT = r"""
import json, os, sys, time
sys.path[:0] = [os.path.join(ROOT, "bindings", "python"), os.path.join(ROOT, "bindings", "python", "examples")]
import tms
from stub_cluster import StubCluster

jobs_db, audit_db = sys.argv[1], sys.argv[2]
with StubCluster(slow_seconds=1.0) as cluster:
    s = tms.Store(jobs_db, audit_db, allowed_clusters=[cluster.base], busy_timeout_ms=50, request_timeout_s=5)
    holder = tms.Store(jobs_db, audit_db)
    import threading
    # Another store of the process holds both files' write locks while the cluster answers.
    lockers = [threading.Thread(target=holder.hold_write_lock, args=(f, 3500)) for f in ("jobs", "audit")]
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("v", s.set_action(
        {"url": cluster.base + "/slow", "token": "operator-token-0123456789", "isPost": True,
         "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "alice")))
    t.start()
    while not cluster.requests:
        time.sleep(0.01)
    [l.start() for l in lockers]
    t.join()
    [l.join() for l in lockers]
    assert "waits with it" in answer["v"][1]["warning"], answer
    pid = os.fork()
    if pid == 0:  # the child: the outcome is its parent's
        s.recover_interrupted()
        os._exit(0)
    os.waitpid(pid, 0)
    s.recover_interrupted()
    print(json.dumps(answer["v"][1]["job_id"]))
"""


def test_a_forked_child_leaves_the_parents_waiting_outcome_alone(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    out = subprocess.run([sys.executable, "-c", f"ROOT = {ROOT!r}\n" + SCRIPT, jobs_db, audit_db],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = json.loads(out.stdout.splitlines()[-1])
    assert rows(jobs_db, f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("SUCCESS",)]
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [(1,)]


CALLS_ACROSS_FORK = r"""
import os, sys
import tms

base, jobs_db, audit_db = sys.argv[1:4]
s = tms.Store(jobs_db, audit_db, allowed_clusters=[base], request_timeout_s=5, connect_timeout_s=5)

def call(cid):
    status = s.set_action({"url": base + "/tms/v1/set/action", "token": "operator-token-0123456789",
                           "isPost": True, "postData": {"action": "PE-Enable", "cids": [cid]}}, "alice")[0]
    assert status == 200, status

call("parent-before")  # leaves an idle kept-alive connection in the store's agent
pid = os.fork()
if pid == 0:
    try:
        call("child")
        code = 0
    except BaseException as e:
        print("child:", repr(e), file=sys.stderr)
        code = 1
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
call("parent-after")
"""


def test_a_forked_child_calls_the_cluster_on_connections_of_its_own(tmp_path, cluster):
    # An idle connection inherited through fork() is the parent's: were the child to send on it,
    # parent and child would write on one socket (and share, and break, one TLS session).
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'bindings', 'python')!r})\n"
                          + CALLS_ACROSS_FORK, cluster.base, str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    came_on = {json.loads(r["body"])["cids"][0]: r["client"] for r in cluster.requests}
    assert set(came_on) == {"parent-before", "child", "parent-after"}, came_on
    assert came_on["child"] not in (came_on["parent-before"], came_on["parent-after"]), came_on
    # The parent keeps its connection alive across its child's life (no new connection per call).
    assert came_on["parent-after"] == came_on["parent-before"], came_on
