"""Syncs per operation: how many times SQLite syncs each file per Set Action (or create_job,
record_audit), counted by the crashvfs shim (tests/power_loss/crashvfs.c) under the library.

    python bench/syncs.py [--n 50] [--sync FULL|NORMAL] [--op set_action|create_job|record_audit]

Runs in a child process under LD_PRELOAD=crashvfs.so with CRASHVFS_COUNTS set (count only: no
undo log, nothing is cut). The store is warmed first (opened, one operation done, so the -wal
files exist and schema work is behind it); then N operations are run one after the other, and
every xSync of jobs.db, audit.db and their -wal files is counted. WAL checkpoints (every ~1000
pages) add syncs of the main files; they are shown apart, per file.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "power_loss"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "examples"))

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import tms
jobs, audit, sync, n, op, cluster, counts = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
store = tms.Store(jobs, audit, synchronous=sync, allowed_clusters=[cluster] if cluster != "-" else [])
token = "bench-bearer-token-0123456789"
def one(i):
    if op == "set_action":
        status, body = store.set_action({"url": cluster + "/tms/v1/set/action", "token": token, "isPost": True,
                                         "postData": {"action": "PE-Enable", "cids": [f"s{i}"]}}, "alice", "10.0.0.1")
        assert status == 200 and "warning" not in body, body
    elif op == "create_job":
        store.create_job("alice", 1, "Trans-Begin", [f"c{i}", f"d{i}"])
    elif op == "record_audit":
        store.record_audit("alice", "bench", [f"c{i}"])
for i in range(3):
    one(-1 - i)                     # warm: files, -wal, schema, first delivery
os.write(1, b"warm\n")
open(counts, "a").write("mark warm\n")
for i in range(n):
    one(i)
open(counts, "a").write("mark end\n")
store.close()                       # its checkpoint is not counted

"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    p.add_argument("--op", default="set_action", choices=["set_action", "create_job", "record_audit"])
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = p.parse_args()

    import powerloss
    from stub_cluster import StubCluster

    shim = powerloss.build_shim()
    with tempfile.TemporaryDirectory(prefix="powerloss-syncs-") as d, StubCluster() as cluster:
        counts = os.path.join(d, "counts")
        jobs, audit = os.path.join(d, "jobs.db"), os.path.join(d, "audit.db")
        env = powerloss.shim_env(shim, None, counts=counts)
        env.setdefault("TMS_LIB", os.path.join(ROOT, "target", "release", "libtms.so"))
        subprocess.run([sys.executable, "-c", CHILD, os.path.join(ROOT, "bindings", "python"), jobs, audit, a.sync,
                        str(a.n), a.op, cluster.base if a.op == "set_action" else "-", counts],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        lines = open(counts).read().splitlines()
    after = lines[lines.index("mark warm") + 1:lines.index("mark end")]
    per_file = collections.Counter()
    for line in after:
        kind, path = line.split(" ", 1)
        per_file[(kind, os.path.basename(path))] += 1
    total = sum(per_file.values())
    result = {"op": a.op, "synchronous": a.sync, "n": a.n, "syncs_total": total, "syncs_per_op": round(total / a.n, 3),
              "per_file": {f"{k} {f}": v for (k, f), v in sorted(per_file.items())},
              "per_file_per_op": {f"{k} {f}": round(v / a.n, 3) for (k, f), v in sorted(per_file.items())}}
    if a.json:
        print(json.dumps(result))
        return
    print(f"{a.op} at synchronous={a.sync}, {a.n} on a warm store: {total} syncs, {total / a.n:.2f} per {a.op}")
    for (kind, f), v in sorted(per_file.items()):
        print(f"  {kind:8} {f:14} {v:6}  ({v / a.n:.2f} per {a.op})")


if __name__ == "__main__":
    main()
