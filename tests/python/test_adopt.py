"""Rolling back to the legacy code and forward again: the legacy app's plain audit rows after the
chain's head fail verification until an operator adopts them with Store.adopt_unchained(reason),
on real SQLite files and (TMS_TEST_ENGINE=postgres) a real PostgreSQL server."""

import sqlite3

import pytest

import tms
from conftest import psql


def legacy_log_action(loc, user_id, status="success"):
    """What the legacy Python's log_action did: a plain INSERT without the chain's columns."""
    sql = ("INSERT INTO audit_log (user_id, action_type, customer_ids, ip_address, status, error_message, "
           f"duration_ms) VALUES ('{user_id}', 'PE-Enable', '[\"c1\"]', '10.0.0.9', '{status}', NULL, 7)")
    if loc.is_postgres:
        psql(loc.jobs, sql)
    else:
        con = sqlite3.connect(loc.audit)
        with con:
            con.execute(sql)
        con.close()


def tamper(loc, sql):
    """An attacker who lifts the append-only triggers."""
    if loc.is_postgres:
        psql(loc.jobs, f"ALTER TABLE audit_log DISABLE TRIGGER USER; {sql}; ALTER TABLE audit_log ENABLE TRIGGER USER")
    else:
        con = sqlite3.connect(loc.audit)
        with con:
            con.executescript(f"DROP TRIGGER IF EXISTS audit_log_no_update; {sql};")
        con.close()


def test_adopting_a_legacy_append_after_a_rollback(loc, store):
    for user in ("alice", "bob"):
        store.record_audit(user, "Trans-Begin", ["c1"])
    with pytest.raises(tms.NotFoundError, match="nothing to adopt"):
        store.adopt_unchained("INC-12")
    legacy_log_action(loc, "carol")
    legacy_log_action(loc, "dave", "failure")
    before = store.verify_audit()
    assert not before["ok"] and before["first_problem"]["problem"] == "inserted"
    assert before["first_problem"]["id"] == 3

    for bad, error in (("", tms.InvalidInputError), ("  ", tms.InvalidInputError),
                       ("a\nb", tms.InvalidInputError), ("x" * 1001, tms.TooLargeError),
                       (None, tms.NullArgumentError)):
        with pytest.raises(error):
            store.adopt_unchained(bad)
    assert store.audit_stats()["total_records"] == 4  # refusals write nothing

    adoption = store.adopt_unchained("INC-12: rolled back to 1.x, then forward")
    assert adoption == {"adopted": 2, "ids": "3-4", "after_seq": 2, "marker_id": 5, "marker_seq": 3}
    after = store.verify_audit()
    assert after["ok"] and after["adopted"] == 2 and after["checked"] == 3, after
    marker = store.audit_trail(action_type="audit_adopt_unchained")[0]
    assert marker["user_id"] == "system" and marker["error_message"].endswith("reason: INC-12: rolled back to 1.x, then forward")
    with pytest.raises(tms.InvalidInputError):
        store.record_audit("mallory", "audit_adopt_unchained")
    store.record_audit("erin", "Trans-Begin")
    assert store.verify_audit()["ok"]

    # A row changed afterwards, adopted or chained, still fails verification.
    tamper(loc, "UPDATE audit_log SET status = 'success' WHERE id = 4")
    assert store.verify_audit()["first_problem"]["problem"] == "altered"
    tamper(loc, "UPDATE audit_log SET status = 'failure' WHERE id = 4")
    assert store.verify_audit()["ok"]
    tamper(loc, "UPDATE audit_log SET user_id = 'mallory' WHERE id = 1")
    assert store.verify_audit()["first_problem"]["id"] == 1


def test_rows_the_app_has_written_past_are_adopted_and_a_broken_chain_is_refused(loc, store):
    store.record_audit("alice", "Trans-Begin")
    legacy_log_action(loc, "legacy")  # the rollback
    store.record_audit("bob", "Trans-Begin")  # forward again: the app writes before anyone looks
    assert not store.verify_audit()["ok"]
    assert store.adopt_unchained("INC-13")["ids"] == "2"
    assert store.verify_audit()["ok"]
    # A chained row changed: the log is broken beyond unchained rows, and nothing is adopted.
    legacy_log_action(loc, "ghost")
    tamper(loc, "UPDATE audit_log SET user_id = 'mallory' WHERE id = 3")
    with pytest.raises(tms.AuditChainBrokenError, match="altered") as refused:
        store.adopt_unchained("INC-14")
    assert refused.value.status == 20
    assert store.audit_stats()["total_records"] == 5


def test_a_keyed_log_is_adopted_only_with_its_key(loc):
    key = "py-adopt-key-0123456789abcdef"
    keyed = loc.open(audit_hmac_key=key)
    try:
        keyed.record_audit("alice", "Trans-Begin")
        legacy_log_action(loc, "carol")
        unkeyed = loc.open()
        try:
            with pytest.raises(tms.AuditKeyMismatchError):
                unkeyed.adopt_unchained("INC-14")
        finally:
            unkeyed.close()
        assert keyed.adopt_unchained("INC-14")["adopted"] == 1
        assert keyed.verify_audit()["ok"]
        dump = loc.dump()
        assert key.encode() not in dump
    finally:
        keyed.close()
