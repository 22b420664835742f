"""The reference Flask app (bindings/python/examples/app.py) driven through its test client,
and the README's demo script run as a newcomer would."""

import os
import subprocess
import sys

import flask  # noqa: F401  (make test installs it: a missing Flask fails these tests, never skips them)
import pytest

from conftest import ROOT, rows
from stub_cluster import StubCluster


@pytest.fixture
def app_and_cluster(tmp_path, dropin_paths):
    import app as app_module

    with StubCluster() as cluster:
        app = app_module.create_app([cluster.base], {"request_timeout_s": 2, "interrupted_after_s": 60})
        app.testing = True
        yield app, cluster
        app.config["TMS_STORE"].close()


def login(client, user):
    assert client.post("/login", json={"user_id": user}).status_code == 200


def test_set_action_through_the_routes(app_and_cluster, tmp_path):
    app, cluster = app_and_cluster
    client = app.test_client()
    assert client.post("/proxy_fetch", json={}).status_code == 401
    login(client, "alice")
    body = {"url": cluster.base + "/tms/v1/set/action", "token": "tok-123456", "isPost": True,
            "postData": {"action": "PE-Enable", "cids": ["c1", "c2", "c1"]}}
    resp = client.post("/proxy_fetch", json=body, headers={"X-Forwarded-For": "10.1.2.3, 10.0.0.1"})
    assert resp.status_code == 200
    job_id = resp.get_json()["job_id"]
    # A double submit with the same Idempotency-Key is one job and one remote call.
    first = client.post("/proxy_fetch", json=body, headers={"Idempotency-Key": "dbl"})
    again = client.post("/proxy_fetch", json=body, headers={"Idempotency-Key": "dbl"})
    assert first.get_json() == again.get_json()
    assert len(cluster.requests) == 2

    mine = client.get("/api/jobs/mine?limit=10").get_json()
    assert mine["count"] == 2 and mine["jobs"][-1]["job_id"] == job_id
    assert mine["jobs"][-1]["customer_count"] == 2
    customers = client.get(f"/api/jobs/{job_id}/customers")
    assert customers.status_code == 200 and customers.get_json()["customers"] == ["c1", "c2"]
    trail = client.get("/api/audit/trail?customer_id=c1").get_json()
    assert trail["count"] == 2 and trail["records"][-1]["ip_address"] == "10.1.2.3"
    stats = client.get("/api/audit/stats").get_json()["stats"]
    assert stats["total_records"] == 2 and stats["success_rate_percent"] == 100.0
    assert client.get("/health").get_json()["status"] == "ok"

    # Someone else's job: 403; a missing one: 404.
    other = app.test_client()
    login(other, "mallory")
    assert other.get(f"/api/jobs/{job_id}/customers").status_code == 403
    assert other.get("/api/jobs/nope/customers").status_code == 404
    assert other.get("/api/jobs/mine").get_json()["count"] == 0


def test_refusals_through_the_route(app_and_cluster, tmp_path):
    app, cluster = app_and_cluster
    client = app.test_client()
    login(client, "alice")
    resp = client.post("/proxy_fetch", json={"url": "http://10.9.9.9/tms", "isPost": True,
                                              "postData": {"action": "Trans-Begin", "cids": ["c1"]}})
    assert resp.status_code == 403 and resp.get_json()["error_code"] == "URL_NOT_ALLOWED"
    resp = client.post("/proxy_fetch", data="not json", content_type="application/json")
    assert resp.status_code == 400
    assert cluster.requests == []


def test_create_job_route(app_and_cluster):
    app, _ = app_and_cluster
    client = app.test_client()
    login(client, "bob")
    resp = client.post("/api/jobs/create", json={"action": "t-enable", "cids": "a\nb, a"})
    assert resp.status_code == 201 and resp.get_json()["job"]["customer_count"] == 2
    assert client.post("/api/jobs/create", json={"action": "nope", "cids": ["a"]}).status_code == 400
    assert client.get("/api/jobs/mine?limit=abc").status_code == 400


def test_the_readme_demo_runs(tmp_path):
    env = dict(os.environ, TMS_DEMO_PORT="0")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bindings/python/examples/run_demo.py"), "--once"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "POST /proxy_fetch -> 200" in out.stdout
    assert '"job_id"' in out.stdout and "GET /api/audit/trail -> 200" in out.stdout
    assert rows(str(tmp_path / "jobs.db"), "SELECT status FROM jobs") == [("SUCCESS",)]
