"""Round trips per call on PostgreSQL, counted by a loopback proxy between the library and the
server (the server's ReadyForQuery messages): create_job, record_audit, get_job,
get_job_customers, update_job and the cache's writes each take ONE once the connection has
prepared its statements; a Set Action seven. A regression to
a transaction of several statements (BEGIN, ..., COMMIT) fails here. Also: the one-statement
calls keep their promises when the answer of a committed statement is lost, an append whose
connection is lost never answers with another writer's row, and a v3 schema upgrades to v4
keeping every row. Not timed: bench/postgres.py prints the times."""

import threading
import time

import pytest

import tms
from conftest import psql, with_param
from pg_proxy import RoundTripProxy
from stub_cluster import StubCluster

KEY = "k" * 32
CALLS = 5


@pytest.fixture
def proxied(pg):
    base, schema_option = pg.jobs.rsplit("options=", 1)
    with RoundTripProxy(base.rstrip("?&")) as proxy:
        proxy.store_url = with_param(proxy.url, "options=" + schema_option)
        yield proxy


def per_call(proxy, call):
    """Round trips per call, after two calls that prepare the connection's statements."""
    call(0)
    call(1)
    before = proxy.round_trips
    for i in range(CALLS):
        call(2 + i)
    return (proxy.round_trips - before) / CALLS


def not_found(call, job_id):
    with pytest.raises(tms.NotFoundError):
        call(job_id)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain chain", "keyed chain"])
@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_each_call_is_one_round_trip(pg, proxied, key, sync):
    with tms.Store(proxied.store_url, audit_hmac_key=key, synchronous=sync) as s:
        job = s.create_job("alice", 1, "Trans-Begin", ["c1", "c2", "c3"])["job_id"]
        counts = {
            "create_job 3 IDs": per_call(proxied, lambda i: s.create_job("alice", 1, "Trans-Begin", [f"a{i}", f"b{i}", f"c{i}"])),
            "create_job no IDs": per_call(proxied, lambda i: s.create_job("alice", 1, "Trans-Begin", [])),
            "create_job 500 IDs": per_call(proxied, lambda i: s.create_job("alice", 1, "Trans-Begin", [f"{i}-{n}" for n in range(500)])),
            "record_audit": per_call(proxied, lambda i: s.record_audit("alice", "Trans-Begin", ["c1"])),
            "get_job": per_call(proxied, lambda i: s.get_job(job)),
            "get_job_customers": per_call(proxied, lambda i: s.get_job_customers(job)),
            "get_job_customers of no job": per_call(proxied, lambda i: not_found(s.get_job_customers, "no-such-job")),
            "update_job": per_call(proxied, lambda i: s.update_job(job, "SUCCESS", http_status=200)),
            "cache_put": per_call(proxied, lambda i: s.cache_put(f"c{i}", {"ready": True})),
            "cache_invalidate": per_call(proxied, lambda i: s.cache_invalidate(f"c{i}")),
        }
        assert counts == {name: 1 for name in counts}
        assert s.get_job_customers(job) == ["c1", "c2", "c3"]
        assert s.verify_audit()["ok"] and s.verify_audit()["checked"] == 2 + CALLS


@pytest.mark.parametrize("with_key", [False, True], ids=["no idempotency key", "idempotency key"])
def test_a_set_action_takes_seven_round_trips(pg, proxied, with_key):
    # The key check before sending (1); the job with its key's claim (1); then one transaction:
    # BEGIN, the outcome with its answer and the audit receipt's claim, the audit row, the
    # receipt's row id, COMMIT (5). It was 11 (13 with a key).
    with StubCluster() as cluster, tms.Store(proxied.store_url, allowed_clusters=[cluster.base], audit_hmac_key=KEY) as s:
        def call(i):
            request = {"url": cluster.base + "/tms/v1/set/action", "token": "operator-token-0123", "isPost": True,
                       "postData": {"action": "PE-Enable", "cids": [f"c{i}"]}}
            status, body = s.set_action(request, "alice", idempotency_key=f"key-{i}" if with_key else None)
            assert status == 200 and "warning" not in body, body

        assert per_call(proxied, call) == 7
        assert s.verify_audit()["ok"] and s.verify_audit()["checked"] == 2 + CALLS


def test_an_append_after_another_writer_moved_the_head_reads_the_head_once(pg, proxied):
    with tms.Store(proxied.store_url, audit_hmac_key=KEY) as mine, tms.Store(pg.jobs, audit_hmac_key=KEY) as other:
        mine.record_audit("alice", "Trans-Begin", ["c1"])
        for _ in range(2):  # the first time also prepares the head's read on the connection
            mine.record_audit("alice", "Trans-Begin", ["c1"])
            other.record_audit("bob", "Trans-Begin", ["c2"])
            before = proxied.round_trips
            mine.record_audit("alice", "Trans-Begin", ["c3"])
        # The append onto the head it knew, which appends nothing; the new head's row; the append.
        assert proxied.round_trips - before == 3
        assert mine.verify_audit()["ok"] and mine.verify_audit()["checked"] == 7


def test_a_lost_answer_of_a_committed_append_or_job_writes_it_once(pg, proxied):
    with tms.Store(proxied.store_url, audit_hmac_key=KEY) as s:
        s.record_audit("alice", "Trans-Begin", ["c0"])
        s.record_audit("alice", "Trans-Begin", ["c0"])
        connections = proxied.connections
        proxied.cut_next_answer()  # the append commits; its answer never arrives
        s.record_audit("alice", "Trans-Begin", ["c1"])
        assert proxied.connections == connections + 1
        assert pg.rows("SELECT COUNT(*) FROM audit_log WHERE customer_ids = '[\"c1\"]'") == [(1,)]
        s.record_audit("alice", "Trans-Begin", ["c2"])
        assert s.verify_audit()["ok"] and s.verify_audit()["checked"] == 4

        proxied.cut_next_answer()  # the job commits; its answer never arrives
        job = s.create_job("alice", 1, "Trans-Begin", ["c1", "c2"])["job_id"]
        assert proxied.connections == connections + 2
        assert pg.rows(f"SELECT COUNT(*) FROM jobs WHERE job_id = '{job}'") == [(1,)]
        assert s.get_job_customers(job) == ["c1", "c2"]


@pytest.mark.parametrize("answer", range(1, 8))
def test_a_set_action_whose_answer_is_lost_at_any_round_trip_is_recorded_once(pg, proxied, answer):
    # The seven answers of a Set Action (see above); the connection is cut in place of one of them.
    with StubCluster() as cluster, tms.Store(proxied.store_url, allowed_clusters=[cluster.base], audit_hmac_key=KEY) as s:
        def call(i, key):
            request = {"url": cluster.base + "/tms/v1/set/action", "token": "operator-token-0123", "isPost": True,
                       "postData": {"action": "PE-Enable", "cids": [f"c{i}"]}}
            return s.set_action(request, "alice", idempotency_key=key)

        call(0, "warm")
        call(1, "warm-2")
        connections = proxied.connections
        proxied.cut_next_answer(skip=answer - 1)
        status, body = call(2, "cut")
        assert proxied.connections == connections + 1  # the cut happened, and the call went on

        assert status == 200 and body["status"] == "success", body
        # The same key again is answered from the first request, never sent twice.
        again, body_again = call(2, "cut")
        assert (again, body_again["job_id"]) == (200, body["job_id"])
        # Sent once per request: the answer cut off never makes the library send again.
        assert len([r for r in cluster.requests if r["path"] == "/tms/v1/set/action"]) == 3
    assert pg.rows("SELECT COUNT(*) FROM jobs") == [(3,)]
    assert pg.rows(f"SELECT status FROM jobs WHERE job_id = '{body['job_id']}'") == [("SUCCESS",)]
    assert pg.rows("SELECT COUNT(*) FROM audit_log") == [(3,)]
    assert pg.rows("SELECT COUNT(*) FROM set_action_audit_receipts WHERE audit_id IS NOT NULL") == [(3,)]
    assert pg.rows("SELECT COUNT(*) FROM set_action_requests WHERE answer_http_status = 200") == [(3,)]


def start_of_a_second():
    """Sleep to just after a second begins: rows recorded now carry the same (second-resolution)
    timestamp, so two writers' rows of the same content onto the same head have the same link."""
    time.sleep(1.05 - time.time() % 1)


def test_a_lost_head_read_after_a_refused_append_does_not_answer_with_another_writers_row(pg, proxied):
    with tms.Store(proxied.store_url, audit_hmac_key=KEY) as mine, tms.Store(pg.jobs, audit_hmac_key=KEY) as other:
        mine.record_audit("alice", "Trans-Begin", ["c0"])
        mine.record_audit("alice", "Trans-Begin", ["c0"])
        start_of_a_second()
        other_id = other.record_audit("alice", "Trans-Begin", ["same"])  # mine's head is now stale
        # Mine's append onto its stale head is answered NULL (nothing appended); the answer of the
        # head read that follows is cut.
        proxied.cut_next_answer(skip=1)
        mine_id = mine.record_audit("alice", "Trans-Begin", ["same"])
        rows = pg.rows("SELECT id, \"timestamp\" FROM audit_log WHERE customer_ids = '[\"same\"]' ORDER BY id")
        assert rows[0][1] == rows[-1][1], "not in the same second: the test proves nothing, run it again"
        # Two calls answered as written: two rows, each call its own id.
        assert mine_id != other_id
        assert [r[0] for r in rows] == [other_id, mine_id]
        assert mine.verify_audit()["ok"]


def test_an_append_that_never_reached_the_server_does_not_answer_with_another_writers_row(pg, proxied):
    with tms.Store(proxied.store_url, audit_hmac_key=KEY) as mine, tms.Store(pg.jobs, audit_hmac_key=KEY) as other:
        for _ in range(2):
            mine.record_audit("alice", "Trans-Begin", ["c0"])  # mine knows the head
        start_of_a_second()
        got = {}
        proxied.swallow_next_request()  # mine's append onto the head it knows never arrives
        mine_call = threading.Thread(target=lambda: got.setdefault("id", mine.record_audit("alice", "Trans-Begin", ["same"])))
        mine_call.start()
        assert proxied.swallowed.wait(10)
        # Meanwhile the other writer appends the same row onto the same head: same seq, same hash.
        other_id = other.record_audit("alice", "Trans-Begin", ["same"])
        proxied.release()  # mine hears its connection lost and reruns
        mine_call.join(30)
        assert not mine_call.is_alive()
        rows = pg.rows("SELECT id, \"timestamp\" FROM audit_log WHERE customer_ids = '[\"same\"]' ORDER BY id")
        assert rows[0][1] == rows[-1][1], "not in the same second: the test proves nothing, run it again"
        assert got["id"] != other_id
        assert [r[0] for r in rows] == [other_id, got["id"]]
        assert mine.verify_audit()["ok"]


V4_FUNCTION = ("tms_audit_append_at(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, TEXT, TEXT, BIGINT, "
               "TEXT)")
V3_AUDIT_COLUMNS = ("id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, "
                    "duration_ms, chain_seq, chain_prev, chain_hash")


def test_a_v3_store_upgrades_to_v4_keeping_every_row(pg):
    with pg.open(audit_hmac_key=KEY) as s:
        jobs = [s.create_job("alice", 1, "Trans-Begin", [f"c{i}", "shared"])["job_id"] for i in range(5)]
        for i in range(5):
            s.record_audit("alice", "Trans-Begin", [f"c{i}"])
    # Back to exactly what schema v3 had: v4 only added the function and audit_log.append_nonce.
    psql(pg.jobs, f"DROP FUNCTION {V4_FUNCTION}; ALTER TABLE audit_log DROP COLUMN append_nonce; "
                  "UPDATE tms_schema SET version = 3 WHERE component = 'store'")
    tables = {"jobs": "*", "job_customers": "*", "audit_log": V3_AUDIT_COLUMNS, "audit_chain_head": "*"}
    before = {t: pg.rows(f"SELECT {cols} FROM {t} ORDER BY 1") for t, cols in tables.items()}
    with pg.open(audit_hmac_key=KEY) as s:
        assert pg.rows("SELECT version FROM tms_schema WHERE component = 'store'") == [(4,)]
        after = {t: pg.rows(f"SELECT {cols} FROM {t} ORDER BY 1") for t, cols in tables.items()}
        assert after == before
        assert pg.rows("SELECT COUNT(*) FROM audit_log WHERE append_nonce IS NOT NULL") == [(0,)]
        assert [s.get_job_customers(j) for j in jobs] == [[f"c{i}", "shared"] for i in range(5)]
        s.record_audit("alice", "Trans-Begin", ["c9"])
        report = s.verify_audit()
        assert report["ok"] and report["checked"] == 6
