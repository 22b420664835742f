"""A network that silently drops every packet (no reset), then one that resets connections: the
loopback interface of a private network namespace taken down under a store and its server, then
the store's sockets aborted with `ss -K`. Calls fail within the URL's timeouts instead of
hanging, a Set Action caught in it keeps its outcome and audit row until the network is back, a
reset under a call in flight goes unnoticed by the caller, and the store goes on without being
reopened. Linux only (unshare -n, ip, ss); run as root as the test suite is."""

import json
import os
import subprocess
import sys

from conftest import ROOT

SCENARIO = r"""
import json, os, subprocess, sys, threading, time
sys.path[:0] = [os.path.join(ROOT, "bindings", "python"), os.path.join(ROOT, "bindings", "python", "examples"),
                os.path.join(ROOT, "tests", "python")]
import tms
from pg_servers import Servers
from stub_cluster import StubCluster

def lo(state):
    subprocess.run(["ip", "link", "set", "lo", state], check=True)

lo("up")
report = {}
with Servers() as servers, StubCluster(slow_seconds=1.0) as cluster:
    server = servers.new("netns").initdb().start()
    # The URL's own timeouts, short for the test: a silent peer is given up on within seconds.
    url = server.url() + ("&connect_timeout=2&tcp_user_timeout=2&keepalives_idle=1&keepalives_interval=1"
                          "&keepalives_retries=1")
    s = tms.Store(url, allowed_clusters=[cluster.base], request_timeout_s=3, connect_timeout_s=2,
                  busy_timeout_ms=1000, interrupted_after_s=60)
    s.create_job("alice", 1, "Trans-Begin", ["warm"])
    # A Set Action whose job is recorded and whose call is in flight when the network goes.
    answer = {}
    def call():
        answer["v"] = s.set_action({"url": cluster.base + "/slow", "token": "operator-token-0123456789",
                                    "isPost": True, "postData": {"action": "PE-Enable", "cids": ["inflight"]}},
                                   "alice")
    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 20
    while not cluster.requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    lo("down")
    started = time.monotonic()
    try:
        s.create_job("alice", 1, "Trans-Begin", ["dark"])
        report["dark_call"] = "succeeded"
    except tms.TmsError as e:
        report["dark_call"] = type(e).__name__
    report["dark_seconds"] = time.monotonic() - started
    t.join(timeout=60)
    report["inflight_alive"] = t.is_alive()
    report["inflight"] = answer.get("v")
    lo("up")
    started = time.monotonic()
    report["after"] = s.set_action({"url": cluster.base + "/tms/v1/set/action", "token": "operator-token-0123456789",
                                    "isPost": True, "postData": {"action": "PE-Enable", "cids": ["after"]}}, "alice")
    report["after_seconds"] = time.monotonic() - started
    # Then the connections are reset under a call in flight: `ss -K` aborts the store's sockets
    # to the server (the client sees ECONNABORTED, as on a reset), while the cluster answers.
    answer.clear()
    sent = len(cluster.requests)
    t = threading.Thread(target=lambda: answer.setdefault("v", s.set_action(
        {"url": cluster.base + "/slow", "token": "operator-token-0123456789", "isPost": True,
         "postData": {"action": "PE-Enable", "cids": ["reset"]}}, "alice")))
    t.start()
    while len(cluster.requests) == sent:
        time.sleep(0.01)
    killed = subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{server.port}"],
                            capture_output=True, text=True)
    report["reset_killed"] = killed.stdout.count("ESTAB")
    t.join(timeout=60)
    report["reset"] = answer.get("v")
    s.close()
    with tms.Store(url) as check:
        report["inflight_job"] = check.get_job(report["inflight"][1]["job_id"])["status"]
        report["audit"] = [r["customer_ids"] for r in check.audit_trail(10)]
        report["reset_job"] = check.get_job(report["reset"][1]["job_id"])["status"]
        report["verify"] = check.verify_audit()["ok"]
print(json.dumps(report))
"""


def test_a_silently_dropping_network_fails_calls_within_the_timeouts_and_loses_nothing_answered():
    out = subprocess.run(["unshare", "-n", "--", sys.executable, "-c", f"ROOT = {ROOT!r}\n" + SCENARIO],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    report = json.loads(out.stdout.splitlines()[-1])
    # The call in the dark failed, bounded by the timeouts (tcp_user_timeout 2 s, a liveness
    # check of 1 s, one reconnect within connect_timeout 2 s), instead of hanging.
    assert report["dark_call"] == "CantOpenError", report
    assert report["dark_seconds"] < 15, report
    # The Set Action in flight was answered (the cluster's answer never came: a timeout), with a
    # warning that its outcome and audit row wait; both were written once the network was back.
    assert not report["inflight_alive"]
    status, body = report["inflight"]
    assert status == 408 and "waits with it" in body["warning"], body
    assert report["after"][0] == 200 and "warning" not in report["after"][1], report["after"]
    assert report["inflight_job"] == "FAILED"
    assert report["audit"].count(["inflight"]) == 1 and report["audit"].count(["after"]) == 1, report["audit"]
    # The reset connections: the call was answered as if nothing happened, recorded once through
    # a fresh connection.
    assert report["reset_killed"] >= 1, report
    assert report["reset"][0] == 200 and "warning" not in report["reset"][1], report["reset"]
    assert report["reset_job"] == "SUCCESS" and report["audit"].count(["reset"]) == 1, report
    assert report["verify"]
