"""Store.metrics(): the Prometheus text read back with prometheus_client's own parser, after real
Set Actions against the loopback stub cluster, on SQLite files and (TMS_TEST_ENGINE=postgres) a
PostgreSQL server; and the reference app's /metrics route."""

import sqlite3

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import psql
from stub_cluster import StubCluster

TOKEN = "metrics-bearer-token-0123456789"
BUCKETS = ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf")


def request(cluster, path="/tms/v1/set/action", cids=("c1",)):
    return {"url": cluster.base + path, "token": TOKEN, "isPost": True,
            "postData": {"action": "Trans-Begin", "cids": list(cids)}}


def parse(text):
    """{(sample name, frozenset(labels)): value}, and the families by name and type."""
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return samples, {f.name: f.type for f in families}


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_metrics_after_real_set_actions(cluster_store, cluster, loc):
    before, _ = parse(cluster_store.metrics())
    assert cluster_store.set_action(request(cluster), "alice", None, idempotency_key="k1")[0] == 200
    assert cluster_store.set_action(request(cluster), "alice", None, idempotency_key="k1")[0] == 200  # a repeat
    assert cluster_store.set_action(request(cluster, cids=("c2",)), "alice")[0] == 200
    assert cluster_store.set_action(request(cluster, "/fail"), "bob")[1]["status"] == "success"  # the job FAILED
    assert cluster_store.set_action(request(cluster, "/unauthorized"), "bob")[0] == 401
    assert cluster_store.set_action(dict(request(cluster), url="http://127.0.0.1:9/x"), "bob")[0] == 403  # refused
    assert cluster_store.set_action("not json", "bob")[0] == 400  # refused
    # A GET of status data is proxied, and is no Set Action: not counted.
    assert cluster_store.set_action({"url": cluster.base + "/tms/v1/status", "token": TOKEN}, "bob")[0] == 200

    text = cluster_store.metrics()
    after, types = parse(text)
    assert types == {"tms_jobs": "gauge", "tms_set_actions": "counter", "tms_set_action_duration_seconds": "histogram",
                     "tms_audit_rows": "gauge", "tms_audit_outbox_pending": "gauge",
                     "tms_store_setting": "gauge"}, types

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    for outcome, n in (("success", 2), ("failure", 2), ("refused", 2), ("repeat", 1)):
        assert delta("tms_set_actions_total", outcome=outcome) == n, (outcome, text)
    assert delta("tms_set_action_duration_seconds_count") == 7
    counts = [value(after, "tms_set_action_duration_seconds_bucket", le=le) for le in BUCKETS]
    assert counts == sorted(counts) and counts[-1] == value(after, "tms_set_action_duration_seconds_count")
    assert delta("tms_set_action_duration_seconds_sum") > 0

    # The gauges are the database's: four jobs sent; five audit rows (the four outcomes and the
    # refused URL; a repeat writes none, and a body that is not JSON is refused unaudited).
    assert loc.rows("SELECT COUNT(*) FROM audit_log") == [(5,)]
    assert value(after, "tms_audit_rows") == 5
    assert value(after, "tms_jobs", status="SUCCESS") == 2
    assert value(after, "tms_jobs", status="FAILED") == 2
    assert value(after, "tms_jobs", status="IN_PROGRESS") == 0
    assert value(after, "tms_audit_outbox_pending") == 0
    assert TOKEN not in text


def test_label_values_are_escaped(cluster_store, loc):
    odd = 'we"ird \\ status\nline'
    if loc.is_postgres:
        psql(loc.jobs, "INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status) "
                       "VALUES ('odd', 'legacy', 1, 'Trans-Begin', '2026-12-01', E'we\"ird \\\\ status\\nline')")
    else:
        con = sqlite3.connect(loc.jobs)
        with con:
            con.execute("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status) "
                        "VALUES ('odd', 'legacy', 1, 'Trans-Begin', '2026-12-01', ?)", (odd,))
        con.close()
    text = cluster_store.metrics()
    assert 'tms_jobs{status="we\\"ird \\\\ status\\nline"} 1' in text
    samples, _ = parse(text)
    assert value(samples, "tms_jobs", status=odd) == 1


@pytest.mark.sqlite_only
def test_outbox_pending_is_read_from_jobs_db(cluster_store, loc):
    con = sqlite3.connect(loc.jobs)
    with con:
        con.execute("INSERT INTO audit_outbox (delivery_key, record, audit_id_hint) VALUES ('k', '{}', NULL)")
    samples, _ = parse(cluster_store.metrics())
    assert value(samples, "tms_audit_outbox_pending") == 1
    with con:
        con.execute("DELETE FROM audit_outbox")
    con.close()


@pytest.mark.sqlite_only  # the app's own files, whatever the engine
def test_the_reference_app_serves_metrics(tmp_path, dropin_paths):
    import app as app_module

    with StubCluster() as cluster:
        app = app_module.create_app([cluster.base], {"request_timeout_s": 5})
        try:
            client = app.test_client()
            assert client.post("/login", json={"user_id": "alice"}).status_code == 200
            assert client.post("/proxy_fetch", json=request(cluster)).status_code == 200
            answer = client.get("/metrics")
            assert answer.status_code == 200
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples, _ = parse(answer.get_data(as_text=True))
            assert value(samples, "tms_jobs", status="SUCCESS") == 1
            assert value(samples, "tms_set_actions_total", outcome="success") >= 1
        finally:
            app.config["TMS_STORE"].close()
