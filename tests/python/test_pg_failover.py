"""The server goes away while dashboard hosts send Set Actions: a failover to a streaming standby
(the primary stopped with -m immediate, the standby promoted) and an immediate restart. Every
call that was answered 200 keeps its job, its outcome and exactly one audit row; calls resume
without reopening the store. Each test runs servers of its own (pg_servers.py)."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from pg_servers import Servers
from stub_cluster import StubCluster

BINDINGS = os.path.join(ROOT, "bindings", "python")

# A dashboard host: Set Actions one after another until STOP exists, each answer a JSON line
# [wall-clock time, status, body]. A waiting outcome is recorded at the next call or at close.
HOST = r"""
import json, os, sys, time, tms
url, cluster, name, stop = sys.argv[1:5]
s = tms.Store(url, allowed_clusters=[cluster], request_timeout_s=5, connect_timeout_s=2,
              busy_timeout_ms=1000, interrupted_after_s=6)
i = 0
while not os.path.exists(stop):
    cid = f"{name}-{i}"
    status, body = s.set_action({"url": cluster + "/slow", "token": "operator-token-0123456789",
                                 "isPost": True, "postData": {"action": "PE-Enable", "cids": [cid]}}, name)
    print(json.dumps([time.time(), status, body, cid]), flush=True)
    i += 1
    if status != 200:
        time.sleep(0.05)
s.close()
print("closed", flush=True)
"""


def start_hosts(url, cluster, tmp_path, n=2):
    stop = str(tmp_path / "stop")
    procs = [subprocess.Popen([sys.executable, "-c", HOST, url, cluster.base, f"h{k}", stop],
                              env=dict(os.environ, PYTHONPATH=BINDINGS), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(n)]
    return stop, procs


def collect(stop, procs):
    open(stop, "w").close()
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert lines[-1] == "closed", out[-2000:] + err
        answers += [json.loads(line) for line in lines[:-1]]
    return answers


def check_store(server_psql, answers, after):
    """Every 200 answer: job with its outcome, exactly one audit row; and calls answered 200 again
    after `after` (the server back) without the store being reopened."""
    answered = [(t, body, cid) for t, status, body, cid in answers if status == 200]
    assert answered, answers
    assert any(t > after for t, _, _ in answered), "no call succeeded after the server came back"
    jobs = dict(line.split("|") for line in server_psql("SELECT job_id || '|' || status FROM jobs").splitlines())
    audit = {}
    for line in server_psql("SELECT customer_ids FROM audit_log WHERE action_type = 'PE-Enable'").splitlines():
        cid = json.loads(line)[0]
        audit[cid] = audit.get(cid, 0) + 1
    for t, body, cid in answered:
        assert body["status"] == "success", body
        assert jobs.get(body["job_id"]) == "SUCCESS", (cid, body, jobs.get(body["job_id"]))
        assert audit.get(cid) == 1, (cid, audit.get(cid), body)
    # Refused calls sent nothing and have no audit row of an outcome.
    return len(answered), len(answers) - len(answered)


def verify(url):
    import tms

    with tms.Store(url) as s:
        check = s.verify_audit()
        assert check["ok"] and check["unchained"] == 0, check


@pytest.fixture
def cluster():
    with StubCluster(slow_seconds=0.3) as c:
        yield c


def test_a_failover_to_a_promoted_standby_loses_no_answered_call(tmp_path, cluster):
    with Servers() as servers:
        primary = servers.new("primary", "-c synchronous_standby_names='*'").initdb().start()
        standby = servers.new("standby").basebackup_of(primary).start()
        # Synchronous replication: a commit returns once the standby has it.
        deadline = time.monotonic() + 30
        while primary.psql("SELECT COUNT(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1":
            assert time.monotonic() < deadline, "the standby never became synchronous"
            time.sleep(0.1)
        # libpq's multi-host syntax, the standby listed first: read-write finds the primary.
        url = (f"postgresql://postgres@127.0.0.1:{standby.port},127.0.0.1:{primary.port}/postgres"
               "?target_session_attrs=read-write&sslmode=disable&connect_timeout=2")
        import tms
        tms.Store(url).close()  # the schema, once
        stop, procs = start_hosts(url, cluster, tmp_path)
        time.sleep(2.5)  # calls in flight
        primary.stop("immediate")
        time.sleep(0.5)
        standby.promote()
        promoted = time.time()
        time.sleep(4)
        answers = collect(stop, procs)
        ok, refused = check_store(standby.psql, answers, promoted)
        # Calls in the gap failed fast instead of hanging.
        print(f"failover: {ok} answered, {refused} refused during the gap")
        verify(url)
        assert standby.psql("SELECT COUNT(*) FROM jobs WHERE status = 'IN_PROGRESS' AND set_action_job "
                            "AND job_id IN (SELECT job_id FROM set_action_audit_receipts)") == "0"


def test_an_immediate_restart_loses_no_answered_call(tmp_path, cluster):
    with Servers() as servers:
        server = servers.new("single").initdb().start()
        url = server.url() + "&connect_timeout=2"
        import tms
        tms.Store(url).close()
        stop, procs = start_hosts(url, cluster, tmp_path)
        time.sleep(2.5)
        server.restart("immediate")
        back = time.time()
        time.sleep(3)
        answers = collect(stop, procs)
        check_store(server.psql, answers, back)
        verify(url)
