"""PostgreSQL taken away in the ways production does, while Set Actions run: every call that was
answered keeps its job, its outcome and exactly one audit row, and the store goes on without
being reopened. Against the server scripts/with-postgres.sh starts (a missing one fails)."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import pg_tool, pg_url, psql
from stub_cluster import StubCluster

TOKEN = "operator-bearer-token-0123456789"


@pytest.fixture
def slow():
    with StubCluster(slow_seconds=0.6) as c:
        yield c


def request(cluster, path, cid):
    return {"url": cluster.base + path, "token": TOKEN, "isPost": True,
            "postData": {"action": "PE-Enable", "cids": [cid]}}


def terminate_store_connections():
    """pg_terminate_backend of every connection a store of this library holds (the server sends
    each a FATAL 57P01 and closes it, as a restart or an idle-session reaper does)."""
    return psql(pg_url(), "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE application_name = 'tms-core' AND pid <> pg_backend_pid()")[0][0]


def wait_for(predicate, what, seconds=20):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def assert_every_answer_recorded_once(pg, answers):
    """Each answered call: its job with its outcome, exactly one audit row, the chain intact."""
    jobs = dict(pg.rows("SELECT job_id, status FROM jobs"))
    for status, body in answers:
        assert status == 200 and body["status"] == "success", body
        assert jobs[body["job_id"]] == "SUCCESS", (body, jobs[body["job_id"]])
    audit = pg.rows("SELECT customer_ids, status FROM audit_log WHERE action_type = 'PE-Enable'")
    assert len(audit) == len(answers), audit
    assert sorted(json.loads(c)[0] for c, _ in audit) == sorted(b["data"] and json.loads(
        pg.rows(f"SELECT request_payload FROM jobs WHERE job_id = '{b['job_id']}'")[0][0])["cids"][0]
        for _, b in answers)
    with pg.open() as s:
        check = s.verify_audit()
        assert check["ok"] and check["unchained"] == 0, check


def test_connections_terminated_mid_call_lose_no_answered_call(pg, slow):
    store = pg.open(allowed_clusters=[slow.base], request_timeout_s=10, busy_timeout_ms=2000)
    answers = []
    for i in range(10):
        sent = len(slow.requests)
        t = threading.Thread(target=lambda i=i: answers.append(store.set_action(request(slow, "/slow", f"c{i}"), "alice")))
        t.start()
        # The job is recorded and the cluster is working on the call: the store's connections go.
        wait_for(lambda: len(slow.requests) > sent, "the call to reach the cluster")
        assert terminate_store_connections() >= 1
        t.join(timeout=30)
        assert not t.is_alive()
    # Each was answered as if nothing happened: the outcome and its audit row went through a
    # fresh connection, with no warning to hide anything.
    assert all("warning" not in body for _, body in answers), answers
    # The connections the server closed are never handed out again: the next calls just work.
    terminate_store_connections()
    for i in range(3):
        status, body = store.set_action(request(slow, "/tms/v1/set/action", f"after{i}"), "alice")
        assert status == 200 and "warning" not in body, body
        answers.append((status, body))
    store.close()
    assert_every_answer_recorded_once(pg, answers)
    assert pg.rows("SELECT COUNT(*) FROM jobs WHERE status = 'IN_PROGRESS'") == [(0,)]


def test_reads_and_plain_writes_go_on_after_the_server_drops_every_connection(pg):
    store = pg.open()
    job = store.create_job("alice", 1, "Trans-Begin", ["c1"])
    for _ in range(3):
        terminate_store_connections()
        assert store.get_job(job["job_id"])["job_id"] == job["job_id"]
        terminate_store_connections()
        store.update_job(job["job_id"], "SUCCESS", http_status=200)
        terminate_store_connections()
        store.record_audit("alice", "Trans-Begin", ["c1"])
    assert store.verify_audit()["checked"] == 3
    store.close()


HOLD_HEAD = """
import subprocess, sys
url, seconds = sys.argv[1], sys.argv[2]
p = subprocess.Popen([sys.argv[3], url, "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, text=True)
p.stdin.write("BEGIN;\\nSELECT 1 FROM audit_chain_head FOR UPDATE;\\n\\\\echo held\\n")
p.stdin.write(f"SELECT pg_sleep({seconds});\\nCOMMIT;\\n")
p.stdin.close()
sys.exit(p.wait())
"""


def test_a_chain_head_held_past_the_lock_timeout_keeps_the_outcome_with_its_audit_row(pg, slow):
    store = pg.open(allowed_clusters=[slow.base], request_timeout_s=10, busy_timeout_ms=300)
    store.record_audit("alice", "Trans-Begin", ["c0"])  # the chain has begun
    holder = subprocess.Popen([sys.executable, "-c", HOLD_HEAD, pg.jobs, "6", pg_tool("psql")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    status, body = store.set_action(request(slow, "/tms/v1/set/action", "c1"), "alice")
    # Answered with what the cluster said, and a warning that says what really happened.
    assert status == 200 and body["status"] == "success"
    assert "could not be recorded yet" in body["warning"] and "waits with it" in body["warning"], body
    assert "was written" not in body["warning"]
    # Neither is in the database yet: never one without the other.
    job_id = body["job_id"]
    assert pg.rows(f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("IN_PROGRESS",)]
    assert pg.rows("SELECT COUNT(*) FROM audit_log") == [(1,)]
    assert holder.wait(timeout=30) == 0
    # The next call (or recover_interrupted, or close) records both, exactly once.
    status, again = store.set_action(request(slow, "/tms/v1/set/action", "c2"), "alice")
    assert status == 200 and "warning" not in again
    store.recover_interrupted()
    store.close()
    assert pg.rows(f"SELECT status FROM jobs WHERE job_id = '{job_id}'") == [("SUCCESS",)]
    assert_every_answer_recorded_once(pg, [(200, body), (status, again)])


def test_a_waiting_outcome_is_recorded_when_the_store_closes(pg, slow):
    store = pg.open(allowed_clusters=[slow.base], request_timeout_s=10, busy_timeout_ms=300)
    store.record_audit("alice", "Trans-Begin", ["c0"])
    holder = subprocess.Popen([sys.executable, "-c", HOLD_HEAD, pg.jobs, "6", pg_tool("psql")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    status, body = store.set_action(request(slow, "/tms/v1/set/action", "c1"), "alice")
    assert "waits with it" in body["warning"]
    assert holder.wait(timeout=30) == 0
    store.close()
    assert_every_answer_recorded_once(pg, [(status, body)])


def test_no_spelling_of_a_password_reaches_an_exception_or_the_tool():
    import traceback

    import tms
    from conftest import ROOT

    tool = os.path.join(ROOT, "target", "release", "tms")
    rest = os.environ["TMS_TEST_PG_PW_URL"].split("@", 1)[1]
    hostport, tail = rest.split("/", 1)
    urls = [f"postgresql://tms_pw:Hunter2@Zq9Secret@{rest}",
            f"postgresql://tms_pw:Hu:nt/er2%zz@Zq9Secret@{rest}",
            f"postgresql://tms_pw@{rest}&password=Hunter2@Zq9Secret",
            f"postgresql://tms_pw:Pass?word@Zq9Secret@{rest}",
            f"postgresql://tms_pw:Hunter2@Zq9Secret@{hostport},{hostport}/{tail}&target_session_attrs=read-write"]
    pieces = ("Hunter", "Zq9", "Secret", "nt/er")
    for url in urls:
        with pytest.raises(tms.TmsError) as info:
            tms.Store(url)
        text = "".join(traceback.format_exception(info.value))
        assert "password authentication failed" in text, text
        assert not any(p in text for p in pieces), text
        # The tool: given on the command line, or in the environment (where --help would show
        # environment values).
        for args, env in ([["--jobs-db", url, "stats"], {}], [["stats"], {"TMS_JOBS_DB": url}],
                          [["stats", "--help"], {"TMS_JOBS_DB": url}]):
            out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60,
                                 env=dict(os.environ, **env))
            shown = out.stdout + out.stderr
            assert not any(p in shown for p in pieces), (args, shown)
            assert out.returncode == (0 if "--help" in args else 2), (args, shown)


def test_every_idle_connection_the_server_dropped_is_replaced_not_handed_out(pg, slow):
    """Several idle connections, all terminated: no call after that fails (each dead one used
    to cost a call, two at a time)."""
    store = pg.open(allowed_clusters=[slow.base], request_timeout_s=10)
    barrier = threading.Barrier(6)

    def fill():
        barrier.wait()
        store.create_job("alice", 1, "Trans-Begin", ["fill"])

    threads = [threading.Thread(target=fill) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert terminate_store_connections() >= 2
    for i in range(10):
        store.create_job("alice", 1, "Trans-Begin", [f"after{i}"])
    terminate_store_connections()
    for i in range(3):
        status, body = store.set_action(request(slow, "/tms/v1/set/action", f"sa{i}"), "alice")
        assert status == 200 and "warning" not in body, body
    store.close()


def test_the_audit_row_of_a_sent_action_survives_its_job_row(pg, slow):
    store = pg.open(allowed_clusters=[slow.base], request_timeout_s=10)
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("v", store.set_action(request(slow, "/slow", "gone"), "alice")))
    t.start()
    wait_for(lambda: len(slow.requests) == 1, "the call to reach the cluster")
    psql(pg.jobs, "DELETE FROM job_customers; DELETE FROM jobs")  # the job row lost meanwhile
    t.join(timeout=30)
    status, body = answer["v"]
    assert status == 200 and "its job is gone" in body["warning"], body
    # The action happened on the cluster: its audit row is there all the same.
    assert pg.rows("SELECT customer_ids, status FROM audit_log") == [('["gone"]', "success")]
    store.close()
