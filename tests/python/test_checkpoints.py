"""Signed audit checkpoints through the Python binding, on real SQLite files and
(TMS_TEST_ENGINE=postgres) a real PostgreSQL server: Store.audit_checkpoint(signing_key) and
Store.verify_audit_checkpoint(checkpoint, public_key) against an attacker who can write the
store and recomputes the whole chain, with or without the HMAC key."""

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess

import pytest

import tms
from conftest import ROOT, psql

TMS = os.path.join(ROOT, "target", "release", "tms")
HMAC_KEY = "python-checkpoint-key-0123456789"
COLUMNS = 'user_id, action_type, customer_ids, "timestamp", ip_address, status, error_message, duration_ms, chain_prev'


def keygen(directory, name="audit.python-suite"):
    """A key pair from `tms keygen`: (private text, public text, private path, public path)."""
    out = subprocess.run([TMS, "keygen", "--out", str(directory), "--name", name], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    private, public = directory / "tms-checkpoint.key", directory / "tms-checkpoint.pub"
    return private.read_text(), public.read_text(), private, public


@pytest.fixture
def keys(tmp_path):
    return keygen(tmp_path / "keys")


def tamper(loc, sql):
    """An attacker with write access to the store lifts the append-only triggers."""
    if loc.is_postgres:
        psql(loc.jobs, f"ALTER TABLE audit_log DISABLE TRIGGER USER; {sql}; ALTER TABLE audit_log ENABLE TRIGGER USER")
    else:
        con = sqlite3.connect(loc.audit)
        con.executescript("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; "
                          + sql + ";")
        con.close()


def read_log(loc):
    rows = loc.rows(f"SELECT {COLUMNS} FROM audit_log ORDER BY id")
    return [list(r) for r in rows]


def chain_hash(key, seq, prev, row):
    """The library's chain hash (audit_chain.rs): SHA-256, or HMAC-SHA256 with the key, over the
    row's fields as compact JSON."""
    fields = [seq, prev, *row[:8]]
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    if key is None:
        return "sha256:" + hashlib.sha256(canonical).hexdigest()
    return "hmac-sha256:" + hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()


def literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def rewrite(loc, rows, key=None):
    """Replace the whole log by `rows`, chained afresh (what someone who can write the files or
    tables, and perhaps holds the HMAC key, can do)."""
    genesis = rows[0][8]
    statements = ["DELETE FROM audit_log"]
    prev = genesis
    for i, row in enumerate(rows):
        seq = i + 1
        h = chain_hash(key, seq, prev, row)
        values = ", ".join(literal(v) for v in [seq, *row[:8], prev, seq, h])
        statements.append(f"INSERT INTO audit_log (id, {COLUMNS}, chain_seq, chain_hash) VALUES ({values})")
        prev = h
    if loc.is_postgres:
        statements.append(f"UPDATE audit_chain_head SET seq = {len(rows)}, hash = '{prev}'")
    tamper(loc, "; ".join(statements))


def problem(store, checkpoint, public):
    report = store.verify_audit_checkpoint(checkpoint, public)
    assert report["ok"] == (report["first_problem"] is None)
    p = report["first_problem"]
    return None if p is None else (p["problem"], p["seq"])


def fill(store, n, first=1):
    for i in range(first, first + n):
        store.record_audit(f"u{i}", "PE-Enable", ["c1", "c2"], ip_address="10.0.0.1", duration_ms=i)


def test_a_checkpoint_signs_the_head_and_a_grown_log_still_extends_it(store, keys):
    private, public, private_path, public_path = keys
    with pytest.raises(tms.NotFoundError):
        store.audit_checkpoint(private)
    fill(store, 4)
    head = store.verify_audit()["head"]
    checkpoint = store.audit_checkpoint(private)
    lines = checkpoint.split("\n")
    assert lines[:3] == ["audit.python-suite", "4", head["hash"]] and lines[3].startswith("time ")
    assert lines[4] == "" and lines[5].startswith("\u2014 audit.python-suite ") and checkpoint.endswith("\n")
    # Paths work as well as texts.
    assert store.audit_checkpoint(private_path).split("\n")[:3] == lines[:3]
    report = store.verify_audit_checkpoint(checkpoint, public_path)
    assert report["ok"] and report["checkpoint"]["seq"] == 4 and report["checkpoint"]["hash"] == head["hash"]
    assert report["checkpoint"]["origin"] == "audit.python-suite"
    fill(store, 3, first=5)
    report = store.verify_audit_checkpoint(checkpoint, public)
    assert report["ok"] and report["checked"] == 7 and report["head"]["seq"] == 7
    # A reset deletes what the checkpoint covers: it fails, as a rewrite on the record.
    store.clear_audit_logs()
    assert store.verify_audit()["ok"]
    assert problem(store, checkpoint, public) == ("cut", 4)


def test_a_log_rewritten_up_to_the_checkpoint_fails_it(loc, store, keys):
    private, public, _, _ = keys
    fill(store, 5)
    checkpoint = store.audit_checkpoint(private)
    fill(store, 2, first=6)
    original = read_log(loc)
    rewrite(loc, original)  # a faithful rewrite is the same log
    assert problem(store, checkpoint, public) is None

    changed = [list(r) for r in original]
    changed[2][5] = "failure"  # status
    rewrite(loc, changed)
    assert store.verify_audit()["ok"]  # the chain alone cannot tell
    assert problem(store, checkpoint, public) == ("altered", 5)
    with pytest.raises(tms.AuditChainBrokenError, match="rewritten"):
        store.audit_checkpoint(private, previous=checkpoint)  # never signed over

    inserted = [list(r) for r in original]
    inserted.insert(1, ["ghost", *original[1][1:]])
    rewrite(loc, inserted)
    assert store.verify_audit()["ok"]
    assert problem(store, checkpoint, public) == ("altered", 5)

    rewrite(loc, original)
    assert problem(store, checkpoint, public) is None
    assert store.audit_checkpoint(private, previous=checkpoint).startswith("audit.python-suite\n7\n")
    tamper(loc, "UPDATE audit_log SET user_id = 'mallory' WHERE chain_seq = 2")
    assert problem(store, checkpoint, public) == ("altered", 2)
    with pytest.raises(tms.AuditChainBrokenError, match="no checkpoint was signed"):
        store.audit_checkpoint(private)
    tamper(loc, "UPDATE audit_log SET user_id = 'u2' WHERE chain_seq = 2")

    tamper(loc, "DELETE FROM audit_log WHERE chain_seq > 5")
    assert problem(store, checkpoint, public) is None  # past the checkpoint: not covered
    tamper(loc, "DELETE FROM audit_log WHERE chain_seq > 4")
    assert problem(store, checkpoint, public) == ("cut", 5)


def test_a_keyed_log_rewritten_with_or_without_its_key_fails_the_checkpoint(loc, keys):
    private, public, _, _ = keys
    keyed = loc.open(audit_hmac_key=HMAC_KEY)
    try:
        fill(keyed, 4)
        with loc.open() as unkeyed:
            with pytest.raises(tms.AuditKeyMismatchError):
                unkeyed.audit_checkpoint(private)
        checkpoint = keyed.audit_checkpoint(private)
        original = read_log(loc)
        rewrite(loc, original, HMAC_KEY)
        assert problem(keyed, checkpoint, public) is None
        changed = [list(r) for r in original]
        changed[0][6] = "it never happened"  # error_message
        rewrite(loc, changed, HMAC_KEY)  # the stolen key
        assert keyed.verify_audit()["ok"]
        assert problem(keyed, checkpoint, public) == ("altered", 4)
        rewrite(loc, changed)  # no key: a plain chain swapped in, which the key finds holds no keyed row
        assert problem(keyed, checkpoint, public) == ("not_keyed", 4)
        with loc.open() as unkeyed:
            assert problem(unkeyed, checkpoint, public) == ("altered", 4)
    finally:
        keyed.close()


def test_forged_foreign_and_malformed_checkpoints_raise(store, keys, tmp_path):
    private, public, _, _ = keys
    fill(store, 3)
    checkpoint = store.audit_checkpoint(private)
    _, same_name_public, _, _ = keygen(tmp_path / "same-name")
    _, other_public, _, _ = keygen(tmp_path / "other", "audit.other")
    head = store.verify_audit()["head"]["hash"]
    bad = [
        checkpoint.replace("\n3\n", "\n2\n", 1),
        checkpoint.replace(head, "sha256:" + "0" * 64, 1),
        checkpoint.replace("audit.python-suite\n", "audit.other\n", 1),
        "", "garbage", checkpoint[: len(checkpoint) // 2], checkpoint.replace("\n", "\r\n"),
        checkpoint + "not a signature line\n",
    ]
    for text in bad:
        with pytest.raises(tms.CheckpointInvalidError) as e:
            store.verify_audit_checkpoint(text, public)
        assert e.value.status == 21
    for wrong in (same_name_public, other_public):
        with pytest.raises(tms.CheckpointInvalidError, match="no signature by the key"):
            store.verify_audit_checkpoint(checkpoint, wrong)
    # Keys that are not keys: bad input, and the secret never comes back in a message.
    seed = private.strip().split("+", 4)[4][24:56]
    for call in (lambda: store.audit_checkpoint(private.replace("MF", "XX", 1)),
                 lambda: store.audit_checkpoint(public),
                 lambda: store.verify_audit_checkpoint(checkpoint, private),
                 lambda: store.audit_checkpoint("PRIVATE+KEY+" + seed)):
        with pytest.raises(tms.InvalidInputError) as e:
            call()
        assert seed not in str(e.value)
    for not_text in (None, 42):
        with pytest.raises(tms.InvalidInputError):
            store.audit_checkpoint(not_text)
        with pytest.raises(tms.InvalidInputError):
            store.verify_audit_checkpoint(checkpoint, not_text)
