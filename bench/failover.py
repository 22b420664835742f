"""How long Set Actions fail while PostgreSQL fails over: a primary and a synchronous standby of
the run's own on loopback (tests/python/pg_servers.py), one dashboard host sending Set Actions
one after another to a stub cluster through a multi-host URL (the standby listed first,
target_session_attrs=read-write); the primary is stopped with -m immediate and the standby
promoted PROMOTE_AFTER seconds later. Printed: the gap (the last answer before the stop to the
first 200 after the promotion), how many calls were refused in it and how long the slowest took,
and the calls answered 200 with their outcome waiting. `--quick` is the smoke run.

Run it through scripts/with-postgres.sh (make bench does) so that TMS_TEST_PG_BIN names the
server binaries; it needs nothing of that server.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "bindings", "python"), os.path.join(ROOT, "bindings", "python", "examples"),
                os.path.join(ROOT, "tests", "python")]

import tms  # noqa: E402
from pg_servers import Servers  # noqa: E402
from stub_cluster import StubCluster  # noqa: E402

HOST = r"""
import json, os, sys, time, tms
url, cluster, stop = sys.argv[1:4]
s = tms.Store(url, allowed_clusters=[cluster], request_timeout_s=5, connect_timeout_s=2, busy_timeout_ms=1000)
i = 0
while not os.path.exists(stop):
    started = time.time()
    status, body = s.set_action({"url": cluster + "/tms/v1/set/action", "token": "operator-token-0123456789",
                                 "isPost": True, "postData": {"action": "PE-Enable", "cids": [f"c{i}"]}}, "bench")
    print(json.dumps([started, time.time(), status, "warning" in body]), flush=True)
    i += 1
s.close()
"""


def run(promote_after, settle):
    with Servers() as servers, StubCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        primary = servers.new("primary", "-c synchronous_standby_names='*'").initdb().start()
        standby = servers.new("standby").basebackup_of(primary).start()
        while primary.psql("SELECT COUNT(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1":
            time.sleep(0.1)
        url = (f"postgresql://postgres@127.0.0.1:{standby.port},127.0.0.1:{primary.port}/postgres"
               "?target_session_attrs=read-write&sslmode=disable&connect_timeout=2")
        tms.Store(url).close()
        stop = os.path.join(tmp, "stop")
        host = subprocess.Popen([sys.executable, "-c", HOST, url, cluster.base, stop],
                                env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(settle)
        stopped = time.time()
        primary.stop("immediate")
        time.sleep(promote_after)
        promoting = time.time()
        standby.promote()
        promoted = time.time()
        time.sleep(settle)
        open(stop, "w").close()
        out, _ = host.communicate(timeout=120)
    calls = [json.loads(line) for line in out.splitlines()]
    before = [c for c in calls if c[1] <= stopped and c[2] == 200]
    after = [c for c in calls if c[0] >= stopped and c[2] == 200 and not c[3]]
    gap_start = max(c[1] for c in before) if before else stopped
    first_ok = min(c[1] for c in after) if after else float("nan")
    in_gap = [c for c in calls if gap_start <= c[0] <= first_ok]
    refused = [c for c in in_gap if c[2] != 200]
    waiting = [c for c in in_gap if c[2] == 200 and c[3]]
    return {
        "calls": len(calls),
        "gap_s": first_ok - gap_start,
        "after_promotion_s": first_ok - promoted,
        "promote_s": promoted - promoting,
        "refused": len(refused),
        "answered_with_outcome_waiting": len(waiting),
        "slowest_refusal_s": max((c[1] - c[0] for c in refused), default=0.0),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    promote_after, settle, rounds = (1.0, 1.5, 1) if args.quick else (2.0, 3.0, 3)
    results = [run(promote_after, settle) for _ in range(rounds)]
    print(f"PostgreSQL failover (primary stopped -m immediate, standby promoted {promote_after:.0f} s later), "
          f"{rounds} round(s):")
    for r in results:
        print(f"  gap {r['gap_s']:.2f} s (first 200 {r['after_promotion_s']:.2f} s after the promotion, which took "
              f"{r['promote_s']:.2f} s); {r['refused']} calls refused in it, the slowest after "
              f"{r['slowest_refusal_s']:.2f} s; {r['answered_with_outcome_waiting']} answered 200 with the outcome "
              f"waiting; {r['calls']} calls in all")


if __name__ == "__main__":
    main()
