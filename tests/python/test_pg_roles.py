"""Least privilege on PostgreSQL: the schema's owner runs `tms init` (and `tms migrate`), the README's GRANTs give
the app's role what it uses, and that role can append to the audit log but never change, delete
or reset it, by any statement or session setting. Against the shared test server, with roles and
a schema of the test's own."""

import json
import os
import re
import subprocess
import uuid

import pytest

import tms
from conftest import ROOT, pg_tool, pg_url, psql, with_param
from stub_cluster import StubCluster

TOOL = os.path.join(ROOT, "target", "release", "tms")


def readme_grants(schema, app_role):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    [block] = [b for b in re.findall(r"```sql\n(.*?)```", text, re.S) if "GRANT" in b and "tms_app" in b]
    return block.replace("tms_app", app_role).replace("SET search_path = tms", f"SET search_path = {schema}") \
        .replace("ON SCHEMA tms ", f"ON SCHEMA {schema} ").replace("IN SCHEMA tms ", f"IN SCHEMA {schema} ")


V4_FUNCTION = "tms_audit_append_at(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, TEXT, TEXT, BIGINT, TEXT)"


@pytest.fixture
def roles():
    tag = uuid.uuid4().hex[:10]
    owner, app, schema = f"tms_owner_{tag}", f"tms_app_{tag}", f"tms_{tag}"
    psql(pg_url(), f"CREATE ROLE {owner} LOGIN; CREATE ROLE {app} LOGIN; GRANT CONNECT ON DATABASE tms_test TO {app}")
    psql(pg_url(), f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")

    def url(role):
        base = pg_url().replace("postgresql://postgres@", f"postgresql://{role}@")
        return with_param(base, f"options=-csearch_path%3D{schema}")

    yield {"owner": url(owner), "app": url(app), "schema": schema, "app_role": app, "owner_role": owner}
    psql(pg_url(), f"DROP SCHEMA {schema} CASCADE; DROP OWNED BY {app}; DROP ROLE {app}; DROP OWNED BY {owner}; DROP ROLE {owner}")


def as_role(url, sql):
    """Run SQL as a role: (ok, error text)."""
    out = subprocess.run([pg_tool("psql"), url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    return out.returncode == 0, out.stderr


def migrate(url, command="migrate"):
    return subprocess.run([TOOL, "--jobs-db", url, command], capture_output=True, text=True, timeout=120)


def test_the_app_role_appends_but_never_changes_the_audit_log(roles):
    # migrate upgrades an existing store only; init creates one (the README's step).
    out = migrate(roles["owner"])
    assert out.returncode == 2 and "tms init" in out.stderr, out.stderr
    out = migrate(roles["owner"], "init")
    assert out.returncode == 0 and json.loads(out.stdout) == {"initialized": True, "created": []}, out.stderr
    out = migrate(roles["owner"])
    assert out.returncode == 0 and json.loads(out.stdout) == {"migrated": True}, out.stderr
    ok, err = as_role(roles["owner"], readme_grants(roles["schema"], roles["app_role"]))
    assert ok, err
    # Everything the dashboard does works with the app's role.
    with StubCluster() as cluster, tms.Store(roles["app"], allowed_clusters=[cluster.base]) as s:
        job = s.create_job("alice", 1, "Trans-Begin", ["c1", "c2"])
        s.update_job(job["job_id"], "SUCCESS", http_status=200)
        status, body = s.set_action({"url": cluster.base + "/tms/v1/set/action", "token": "operator-token-0123",
                                     "isPost": True, "postData": {"action": "PE-Enable", "cids": ["c3"]}},
                                    "alice", idempotency_key="k1")
        assert status == 200 and "warning" not in body, body
        s.record_audit("alice", "Trans-Begin", ["c1"])
        s.cache_put("c1", {"ready": True})
        assert s.cache_invalidate("c1") == 1
        assert s.recover_interrupted() == 0
        assert len(s.audit_trail(10)) == 2 and s.verify_audit()["ok"]
        assert "tms_audit_rows 2" in s.metrics()
        # The owner's operations are refused to it.
        with pytest.raises(tms.TmsError, match="permission denied"):
            s.clear_audit_logs()
    # No statement or setting lets it change the log or the head: not even with DELETE granted,
    # the way the review's role had it, and the reset's session setting.
    psql(pg_url(), f"GRANT DELETE ON {roles['schema']}.audit_log TO {roles['app_role']}")
    for sql in ["UPDATE audit_log SET user_id = 'mallory'",
                "DELETE FROM audit_log",
                "BEGIN; SET LOCAL tms.audit_reset = 'on'; DELETE FROM audit_log; COMMIT",
                # A temporary pg_class claiming the app's role owns audit_log (pg_temp comes
                # first in a session's search_path).
                "CREATE TEMP TABLE pg_class (oid oid, relowner oid); "
                "INSERT INTO pg_temp.pg_class SELECT 'audit_log'::regclass::oid, r.oid FROM pg_catalog.pg_roles r "
                "WHERE r.rolname = current_user; "
                "BEGIN; SET LOCAL tms.audit_reset = 'on'; DELETE FROM audit_log; COMMIT",
                "TRUNCATE audit_log",
                "UPDATE audit_chain_head SET seq = 0, hash = ''",
                "INSERT INTO audit_log (user_id, action_type) VALUES ('mallory', 'Trans-Begin')",
                "ALTER TABLE audit_log DISABLE TRIGGER USER",
                "SELECT tms_audit_append('m', 'Trans-Begin', NULL, NULL, NULL, 'success', NULL, NULL, 1, '', 'x')",
                # The library's own row types, which verification trusts: not for the app's role.
                "SELECT tms_audit_append('system', 'audit_reset', NULL, NULL, NULL, 'success', NULL, NULL, 3, '', 'x')"]:
        ok, err = as_role(roles["app"], sql)
        assert not ok and ("permission denied" in err or "append-only" in err or "must be owner" in err
                           or "does not extend" in err or "only by the schema owner" in err), (sql, err)
    with tms.Store(roles["owner"]) as owner:
        assert owner.verify_audit()["checked"] == 2
        # The owner resets through the library; the reset is itself a chained row.
        assert owner.clear_audit_logs() == 2
        check = owner.verify_audit()
        assert check["ok"] and check["checked"] == 1, check
        assert owner.audit_trail(5)[0]["action_type"] == "audit_reset"


def test_an_old_schema_opened_with_the_app_role_says_to_migrate_as_owner(roles):
    assert migrate(roles["owner"], "init").returncode == 0
    assert as_role(roles["owner"], readme_grants(roles["schema"], roles["app_role"]))[0]
    # As if the schema were older than v3, the oldest this library works on without migrating it
    # (v3's functions are made again by `CREATE OR REPLACE`; v4's additions go).
    psql(roles["owner"], f"DROP FUNCTION {V4_FUNCTION}; ALTER TABLE audit_log DROP COLUMN append_nonce; "
                         "UPDATE tms_schema SET version = 2")
    with pytest.raises(tms.TmsError) as refused:
        tms.Store(roles["app"])
    assert "run `tms migrate --jobs-db URL` with the schema owner's URL" in str(refused.value)
    assert isinstance(refused.value, tms.CantOpenError)
    out = migrate(roles["app"])
    assert out.returncode == 2 and "tms migrate" in out.stderr
    assert migrate(roles["owner"]).returncode == 0
    tms.Store(roles["app"]).close()


def test_a_fleet_upgrades_a_v3_schema_without_downtime_library_first_then_the_owners_migrate(roles):
    out = migrate(roles["owner"], "init")
    assert out.returncode == 0, out.stderr
    v4_function = V4_FUNCTION
    # Back to schema v3 (v4 only added the function and audit_log.append_nonce), granted as the
    # README of v3 said.
    ok, err = as_role(roles["owner"], f"DROP FUNCTION {v4_function}; ALTER TABLE audit_log DROP COLUMN append_nonce; "
                                      "UPDATE tms_schema SET version = 3")
    assert ok, err
    v3_grants = readme_grants(roles["schema"], roles["app_role"]).replace(f",\n    {v4_function}", "")
    assert "tms_audit_append_at" not in v3_grants
    ok, err = as_role(roles["owner"], v3_grants)
    assert ok, err
    key = "k" * 32
    # Step 1: every host's library is upgraded; the app's role may not upgrade the schema, and the
    # library works on v3 as it is (v3's locked append).
    with tms.Store(roles["app"], audit_hmac_key=key) as running:
        assert psql(roles["owner"], "SELECT version FROM tms_schema WHERE component = 'store'") == [(3,)]
        for i in range(2):
            running.record_audit("alice", "Trans-Begin", [f"c{i}"])
        job = running.create_job("alice", 1, "Trans-Begin", ["c1"])["job_id"]
        assert running.get_job(job)["job_id"] == job
        # `tms migrate` (or init) with the app's role upgrades nothing and says so: exit 2, never
        # "migrated" (the fleet would stay on v3's slower path unnoticed).
        for command in ("migrate", "init"):
            out = migrate(roles["app"], command)
            assert out.returncode == 2 and "schema owner" in out.stderr and not out.stdout, (command, out)
        assert psql(roles["owner"], "SELECT version FROM tms_schema WHERE component = 'store'") == [(3,)]
        # A read-only server (a standby) on v3 still serves reads.
        schema_option = f"options=-csearch_path%3D{roles['schema']}"
        standby_url = roles["app"].replace(schema_option, schema_option + "%20-cdefault_transaction_read_only%3Don")
        assert standby_url != roles["app"]
        with tms.Store(standby_url) as standby:
            assert standby.get_job(job)["job_id"] == job
        # Step 2: the owner migrates while the host runs; the host keeps appending.
        out = migrate(roles["owner"])
        assert out.returncode == 0 and json.loads(out.stdout) == {"migrated": True}, out.stderr
        running.record_audit("alice", "Trans-Begin", ["c2"])
        # A host that opens the store now takes v4's one-statement append (its rows keep a nonce).
        with tms.Store(roles["app"], audit_hmac_key=key) as reopened:
            for i in range(3, 6):
                reopened.record_audit("alice", "Trans-Begin", [f"c{i}"])
        running.record_audit("alice", "Trans-Begin", ["c6"])
        check = running.verify_audit()
        assert check["ok"] and check["checked"] == 7, check
    nonces = psql(roles["owner"], "SELECT customer_ids, append_nonce IS NOT NULL FROM audit_log ORDER BY id")
    assert [n == "t" for _, n in nonces] == [False, False, False, True, True, True, False], nonces
    # The upgrade granted the new function to the app's role only, never to PUBLIC.
    ok, err = as_role(roles["app"], "SELECT tms_audit_append_at('m', 'Trans-Begin', NULL, NULL, NULL, 'success', "
                                     "NULL, NULL, 1, '', 'x', NULL, 'n')")
    assert ok, err  # it may call it (the head does not match: nothing appended)
    assert psql(pg_url(), f"SELECT has_function_privilege('public', '{roles['schema']}.{v4_function}', 'EXECUTE')") == [("f",)]
