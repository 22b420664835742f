"""Set Action end to end: the library against a real HTTP server on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import tms
from conftest import FIXTURES, ROOT, TOKEN, cluster_options, rows, undelivered
from conftest import set_action_request as request
from stub_cluster import StubCluster

def open_store(loc, cluster, **options):
    # Short enough to keep the timeout tests quick, long enough for a loaded machine's ordinary
    # calls; recovery tests sleep past interrupted_after_s.
    return loc.open(**cluster_options(cluster, **dict(dict(request_timeout_s=2, interrupted_after_s=3), **options)))


@pytest.fixture
def store(loc, cluster):
    s = open_store(loc, cluster)
    yield s
    # Every audit row the flow wrote (outcomes and refusals) is on the hash chain.
    check = s.verify_audit()
    assert check["ok"] and check["unchained"] == 0, check
    s.close()
    # No test may leave a job that was sent but not recorded, nor an audit row only in the outbox.
    assert loc.rows("SELECT COUNT(*) FROM jobs WHERE status = 'IN_PROGRESS'") == [(0,)]
    if not loc.is_postgres:
        assert undelivered(loc.jobs, loc.audit) == 0
    # The bearer token is nowhere in what the library stored (WAL and shm included).
    assert TOKEN.encode() not in loc.dump(), "token found in the store"


JOB_COLUMNS = ("status", "http_status", "error_message", "response_summary", "request_payload", "cluster_url")
AUDIT_COLUMNS = ("user_id", "action_type", "customer_ids", "ip_address", "status", "error_message", "duration_ms")


def job_row(loc, job_id):
    [row] = loc.rows(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE job_id = '{job_id}'")
    return dict(zip(JOB_COLUMNS, row))


def audit_rows(loc):
    return [dict(zip(AUDIT_COLUMNS, r)) for r in loc.rows(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY id")]


def test_success_row(store, cluster, loc):
    status, body = store.set_action(request(cluster), "alice", "10.0.0.7")
    assert status == 200
    assert body == {"status": "success", "data": {"success": True, "message": "Action completed", "processed": 2},
                    "httpStatus": 200, "job_id": body["job_id"]}
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["http_status"], job["error_message"]) == ("SUCCESS", 200, None)
    assert json.loads(job["response_summary"])["processed"] == 2
    assert json.loads(job["request_payload"]) == {"action": "Trans-Begin", "cids": ["c1", "c2"]}
    assert job["cluster_url"] == cluster.base + "/tms/v1/set/action"
    [audit] = audit_rows(loc)
    assert (audit["user_id"], audit["action_type"], audit["status"], audit["ip_address"]) == ("alice", "Trans-Begin", "success", "10.0.0.7")
    assert json.loads(audit["customer_ids"]) == ["c1", "c2"]
    assert audit["duration_ms"] >= 0
    sent = cluster.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert sent["body"] == b'{"action": "Trans-Begin", "cids": ["c1", "c2"]}'  # as json.dumps wrote it


def test_success_false_row(store, cluster, loc):
    status, body = store.set_action(request(cluster, "/fail"), "alice")
    assert status == 200 and body["status"] == "success" and body["httpStatus"] == 200
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["error_message"]) == ("FAILED", "those CIDs are not ready")
    [audit] = audit_rows(loc)
    assert (audit["status"], audit["error_message"]) == ("failure", "those CIDs are not ready")


def test_non_json_2xx_is_failed_and_audited(store, cluster, loc):
    status, body = store.set_action(request(cluster, "/html"), "alice")
    assert status == 500
    assert body["status"] == "error" and body["httpStatus"] == 200 and body["job_id"]
    assert body["message"].startswith("Invalid JSON response: ")
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["http_status"]) == ("FAILED", 500)
    assert job["error_message"].startswith("JSON parse error: ")
    [audit] = audit_rows(loc)  # the legacy wrote none here
    assert audit["status"] == "failure"


@pytest.mark.parametrize("path, code", [("/unauthorized", 401), ("/error", 500), ("/redirect", 302)])
def test_other_statuses(store, cluster, loc, path, code):
    status, body = store.set_action(request(cluster, path), "alice")
    assert status == code
    assert body["httpStatus"] == code and body["status"] == "error" and body["job_id"]
    assert body["message"].startswith(f"API returned status {code}: ")
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["http_status"]) == ("FAILED", code)
    assert job["error_message"] == body["message"].replace(TOKEN, "[REDACTED]")
    assert audit_rows(loc)[0]["status"] == "failure"
    if path == "/unauthorized":  # the stub echoed the Authorization header back
        assert "[REDACTED]" in job["error_message"]
    if path == "/redirect":
        assert len(cluster.requests) == 1  # not followed


def test_timeout(store, cluster, loc):
    status, body = store.set_action(request(cluster, "/slow"), "alice")
    assert (status, body["message"], body["httpStatus"]) == (408, "Request timeout", 408)
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["http_status"], job["error_message"]) == ("FAILED", None, "Request timeout after 2s")
    assert audit_rows(loc)[0]["status"] == "failure"


def test_connection_refused(loc, cluster):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dead = f"http://127.0.0.1:{port}"
    with open_store(loc, cluster, allowed_clusters=[dead]) as s:
        status, body = s.set_action({"url": dead + "/tms", "isPost": True, "token": TOKEN,
                                     "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "bob")
    assert status == 500 and body["httpStatus"] == 500 and body["job_id"]
    job = job_row(loc, body["job_id"])
    assert (job["status"], job["http_status"]) == ("FAILED", None)
    assert job["error_message"] == body["message"] and job["error_message"]


def test_oversized_answer_is_cut_and_said(store, cluster, loc):
    status, body = store.set_action(request(cluster, "/big"), "alice")
    assert status == 500
    assert "larger than 16384 bytes and was cut" in body["message"]
    assert job_row(loc, body["job_id"])["status"] == "FAILED"


def test_urls_outside_the_allowlist_are_refused_audited_and_not_sent(store, cluster, loc):
    for url in ["http://127.0.0.2:9/tms/v1/set/action", "file:///etc/passwd",
                cluster.base.replace("http:", "https:") + "/tms", "gopher://x/"]:
        status, body = store.set_action(dict(request(cluster), url=url), "mallory", "10.6.6.6")
        assert status == 403, url
        assert body["error_code"] == "URL_NOT_ALLOWED" and "job_id" not in body
    assert cluster.requests == []
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(0,)]
    audits = audit_rows(loc)
    assert len(audits) == 4 and all(a["status"] == "failure" and a["user_id"] == "mallory" for a in audits)
    # A plain proxy request to a foreign host is refused the same way.
    status, body = store.set_action({"url": "http://169.254.169.254/latest/meta-data"}, "mallory")
    assert status == 403 and cluster.requests == []


def test_unknown_action_is_refused_before_sending(store, cluster, loc):
    status, body = store.set_action(request(cluster, action="Trans-Beginn"), "alice")
    assert status == 400 and body["error_code"] == "UNKNOWN_ACTION"
    assert cluster.requests == []
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(0,)]
    assert audit_rows(loc)[0]["error_message"].startswith("unknown action")


@pytest.mark.parametrize("bad", ["", "{", "[]", '{"url": 1}', '{"url": "x", "postData": {"action": "Trans-Begin", "cids": []}}'])
def test_malformed_requests_get_400(store, cluster, bad):
    status, body = store.set_action(bad, "alice")
    assert status == 400 and body["error_code"] == "INVALID_INPUT" and body["message"]
    assert cluster.requests == []


def test_empty_user_is_refused(store, cluster):
    status, body = store.set_action(request(cluster), "")
    assert status == 400 and "user_id" in body["message"]
    assert cluster.requests == []


def test_a_read_request_is_proxied_without_a_job(store, cluster, loc):
    status, body = store.set_action({"url": cluster.base + "/tms/v1/status", "token": TOKEN}, "alice")
    assert status == 200 and body["data"]["apps"][0]["status"] == "READY" and "job_id" not in body
    assert cluster.requests[-1]["method"] == "GET"
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_form_encoding(store, cluster):
    req = request(cluster, cids=["a", "b"], contentType="application/x-www-form-urlencoded")
    status, _ = store.set_action(req, "alice")
    sent = cluster.requests[-1]
    assert sent["body"] == b"action=Trans-Begin&cids=a&cids=b"
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_manual_and_csv_input_with_the_150_id_fixture(store, cluster, loc):
    with open(os.path.join(FIXTURES, "dummy_batch_150_customers.csv")) as f:
        csv_ids = tms.parse_customer_ids(f.read(), csv=True)
    assert len(csv_ids) == 150
    status, body = store.set_action(request(cluster, cids=csv_ids), "op")
    assert status == 200 and body["data"]["processed"] == 150
    pasted = "\n".join(csv_ids[:75]) + "\n" + ", ".join(csv_ids)  # lines, commas and repeats
    status, body2 = store.set_action(dict(request(cluster), postData={"action": "PE-Enable", "cids": pasted}), "op")
    assert status == 200 and body2["data"]["processed"] == 150
    assert store.get_job_customers(body2["job_id"]) == sorted(csv_ids)


def test_a_27682_id_job_with_repeats(loc, cluster):
    # A long busy timeout: a lock left behind (as the legacy left one after repeats) would make
    # the next call wait all of it, far beyond what any slow machine takes for a call.
    with open_store(loc, cluster, busy_timeout_ms=60_000) as store:
        ids = [f"{i:032x}" for i in range(27_682)]
        status, body = store.set_action(request(cluster, cids=ids + ids[:500]), "bulk")
        assert status == 200 and body["data"]["processed"] == 27_682
        assert store.get_job(body["job_id"])["customer_count"] == 27_682
        start = time.monotonic()
        status, _ = store.set_action(request(cluster, cids=["x", "x"]), "bulk")
        assert status == 200 and time.monotonic() - start < 30


def test_idempotent_repeats_send_once(store, cluster, loc):
    first = store.set_action(request(cluster), "alice", idempotency_key="k-1")
    again = store.set_action(request(cluster), "alice", idempotency_key="k-1")
    assert again == first
    assert len(cluster.requests) == 1
    other_user = store.set_action(request(cluster), "bob", idempotency_key="k-1")
    assert other_user[1]["job_id"] != first[1]["job_id"]
    assert len(cluster.requests) == 2
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(2,)]


def test_concurrent_idempotent_repeats_from_threads(loc):
    with StubCluster(slow_seconds=0.5) as slow_cluster:
        with open_store(loc, slow_cluster, request_timeout_s=5, interrupted_after_s=60) as s:
            answers = []
            barrier = threading.Barrier(4)

            def go():
                barrier.wait()
                answers.append(s.set_action(request(slow_cluster, "/slow"), "alice", idempotency_key="same"))

            threads = [threading.Thread(target=go) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert len(slow_cluster.requests) == 1
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1
    assert answers[0][0] == 200


CHILD = """
import json, sys
sys.path.insert(0, {bindings!r})
import tms
s = tms.Store({jobs!r}, {audit!r}, allowed_clusters=[{base!r}], request_timeout_s=10, interrupted_after_s=60)
print(json.dumps(s.set_action({req!r}, "alice", idempotency_key={key!r})), flush=True)
"""


def child(loc, cluster, req, key):
    code = CHILD.format(bindings=os.path.join(ROOT, "bindings", "python"), jobs=loc.jobs,
                        audit=loc.audit, base=cluster.base, req=json.dumps(req), key=key)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_concurrent_idempotent_repeats_from_processes(loc):
    with StubCluster(slow_seconds=0.5) as slow_cluster:
        loc.open().close()
        procs = [child(loc, slow_cluster, request(slow_cluster, "/slow"), "proc-key") for _ in range(3)]
        outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert len(slow_cluster.requests) == 1
    assert len({json.dumps(o, sort_keys=True) for o in outs}) == 1


def test_a_job_interrupted_by_a_killed_process_is_recovered(loc, cluster):
    loc.open().close()
    proc = child(loc, cluster, request(cluster, "/slow"), "killed")  # /slow sleeps 6 s
    deadline = time.monotonic() + 20
    while loc.rows("SELECT COUNT(*) FROM jobs WHERE status = 'IN_PROGRESS'") != [(1,)]:
        assert time.monotonic() < deadline, "the child never recorded its job"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [(job_id,)] = loc.rows("SELECT job_id FROM jobs")
    time.sleep(3.3)  # older than interrupted_after_s
    with open_store(loc, cluster) as s:  # recovery on open
        job = s.get_job(job_id)
        assert job["status"] == "FAILED"
        assert "interrupted" in job["error_message"] and "outcome is unknown" in job["error_message"]
        assert s.recover_interrupted() == 0
        # A repeat of its key answers from the recovered job, without sending again.
        sent = len(cluster.requests)
        status, body = s.set_action(request(cluster, "/slow"), "alice", idempotency_key="killed")
        assert status == 500 and body["job_id"] == job_id and len(cluster.requests) == sent


def test_recovery_leaves_jobs_from_create_job_to_their_caller(loc, cluster):
    # The dashboard's /api/jobs/create makes jobs through create_job and leaves them IN_PROGRESS
    # as the legacy did: they are the caller's to finish, however old (the killed-process test
    # above shows a Set Action's own job recovered).
    with open_store(loc, cluster) as s:
        job = s.create_job("u", 1, "Trans-Begin", ["c1"])
        assert s.recover_interrupted() == 0
        time.sleep(3.3)  # older than interrupted_after_s
        assert s.recover_interrupted() == 0
    with open_store(loc, cluster) as s:  # nor at open
        assert s.get_job(job["job_id"])["status"] == "IN_PROGRESS"


def test_events_reach_logging_without_the_token(store, cluster, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="tms.set_action")
    store.set_action(request(cluster, "/unauthorized"), "harish")
    lines = [r.getMessage() for r in caplog.records if r.name == "tms.set_action"]
    assert len(lines) == 2
    # logging stamps time and level itself: the message starts at the event's name
    assert lines[0].startswith("set_action_start | user=harish | action=Trans-Begin | cid_count=2 | api_base=127.0.0.1")
    assert [r.levelname for r in caplog.records if r.name == "tms.set_action"] == ["INFO", "INFO"]
    assert lines[1].startswith("set_action_done | user=harish | action=Trans-Begin | job_id=")
    assert "| http_status=401 | elapsed_ms=" in lines[1]
    # the cluster's quotes are escaped, so the quoted value ends where it should
    assert r'| result=fail | error="API returned status 401: {\"errorCode\": \"UNAUTHORIZED\"' in lines[1]
    assert all(TOKEN not in line for line in lines)


def test_https_goes_through_rustls(loc, cluster):
    """An https cluster that does not speak TLS: rustls fails the handshake, and that is a
    connection-error answer with the job FAILED (no panic, no missing crypto provider)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    base = f"https://127.0.0.1:{port}"
    with open_store(loc, cluster, allowed_clusters=[base]) as s:
        status, body = s.set_action({"url": base + "/tms", "isPost": True, "token": TOKEN,
                                     "postData": {"action": "PE-Direct", "cids": ["c1"]}}, "tls")
    listener.close()
    assert status == 500 and body["job_id"]
    assert job_row(loc, body["job_id"])["status"] == "FAILED"
