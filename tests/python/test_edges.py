"""The promise at the edges: each hole a hostile review found, tried against real files, a real
HTTP server on loopback and real processes. Numbers in the test names follow the hardening issue.
"""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import tms
from conftest import ROOT, SLOW_SET_ACTION, TOKEN, cluster_options, python, rows, undelivered, write_lock_held
from conftest import set_action_request as request
from stub_cluster import StubCluster

BINDINGS = os.path.join(ROOT, "bindings", "python")


def open_store(tmp_path, cluster, **options):
    return tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), **cluster_options(cluster, **options))


def job(tmp_path, job_id):
    con = sqlite3.connect(str(tmp_path / "jobs.db"))
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone())
    finally:
        con.close()


def audit_rows(tmp_path):
    return rows(str(tmp_path / "audit.db"), "SELECT user_id, action_type, status, error_message FROM audit_log ORDER BY id")


# --- 1. an answered Set Action is recorded whatever state audit.db is in -----------------------

def test_1_an_answer_is_recorded_while_audit_db_is_locked_and_its_audit_row_follows(tmp_path, cluster):
    store = open_store(tmp_path, cluster, busy_timeout_ms=200)
    with write_lock_held(str(tmp_path / "audit.db")):
        status, body = store.set_action(request(cluster), "alice", "10.0.0.1")
        # The cluster answered, and the job says so, although audit.db could not be written.
        assert status == 200 and body["status"] == "success" and "warning" not in body
        row = job(tmp_path, body["job_id"])
        assert (row["status"], row["http_status"]) == ("SUCCESS", 200)
        assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM audit_outbox") == [(1,)]
        assert audit_rows(tmp_path) == []
        # Still locked: another write cannot deliver it yet, and loses nothing trying.
        with pytest.raises(tms.BusyError):
            store.record_audit("bob", "PE-Enable")
        assert store.recover_interrupted() == 0
        assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM audit_outbox") == [(1,)]
    # The next write delivers it, exactly once.
    store.record_audit("bob", "PE-Enable")
    assert [r[:3] for r in audit_rows(tmp_path)] == [("bob", "PE-Enable", "success"), ("alice", "Trans-Begin", "success")]
    assert undelivered(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")) == 0
    store.recover_interrupted()
    store.close()
    with open_store(tmp_path, cluster) as again:
        assert again.verify_audit()["ok"]
    assert len(audit_rows(tmp_path)) == 2


def test_1_a_row_left_in_the_outbox_is_delivered_at_the_next_open(tmp_path, cluster):
    store = open_store(tmp_path, cluster, busy_timeout_ms=200)
    with write_lock_held(str(tmp_path / "audit.db")):
        status, body = store.set_action(request(cluster, "/fail"), "alice")
        store.close()
    assert job(tmp_path, body["job_id"])["status"] == "FAILED"
    with open_store(tmp_path, cluster) as again:
        assert [r[:3] for r in audit_rows(tmp_path)] == [("alice", "Trans-Begin", "failure")]
        assert again.verify_audit()["ok"]


READ_ONLY_PROBE = """
import json, sys, tms
out = {}
try:
    s = tms.Store(sys.argv[1], sys.argv[2], allowed_clusters=[sys.argv[3]])
except tms.TmsError as e:
    print(json.dumps({"open": [type(e).__name__, str(e)]})); sys.exit(0)
out["jobs"] = len(s.get_user_jobs("u"))
out["trail"] = len(s.audit_trail())
out["verify"] = s.verify_audit()["ok"]
for name, call in [("create_job", lambda: s.create_job("u", 1, "Trans-Begin", ["c9"])),
                   ("record_audit", lambda: s.record_audit("u", "Trans-Begin")),
                   ("cache_put", lambda: s.cache_put("c1", {"a": 1}))]:
    try:
        call(); out[name] = "ok"
    except tms.TmsError as e:
        out[name] = [type(e).__name__, e.status, str(e)]
status, body = s.set_action({"url": sys.argv[3] + "/tms/v1/set/action", "token": "token-0123456789",
                             "isPost": True, "postData": {"action": "Trans-Begin", "cids": ["c1"]}}, "u")
out["set_action"] = [status, body.get("error_code"), body.get("message")]
print(json.dumps(out))
"""


@pytest.fixture
def world_readable_binding(tmp_path_factory):
    """The binding and the library copied where an unprivileged user can read them, wherever
    the clone lives (a clone under /root or a 0700 temp dir is out of `nobody`'s reach)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="tms-binding-")
    shutil.copytree(os.path.join(BINDINGS, "tms"), os.path.join(d, "tms"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    lib = os.environ.get("TMS_LIB") or os.path.join(ROOT, "target", "release", "libtms.so")
    shutil.copy(lib, os.path.join(d, "libtms.so"))
    for root, dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_unprivileged(binding, code, args):
    """Root ignores file permissions, so as root the probe drops to `nobody`, with the system
    Python and a copy of the binding that `nobody` can read."""
    env = dict(os.environ, PYTHONPATH=binding, TMS_LIB=os.path.join(binding, "libtms.so"))
    preexec, interpreter = None, sys.executable
    if os.geteuid() == 0:
        interpreter = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

        def preexec():
            os.setgid(65534)
            os.setuid(65534)
    out = subprocess.run([interpreter, "-c", code, *args], env=env, capture_output=True, text=True,
                         timeout=60, preexec_fn=preexec, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_1_a_read_only_store_reads_and_refuses_writes_and_set_actions_before_sending(
        world_readable_binding, cluster, what):
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="tms-ro-"))
    try:
        os.chmod(d, 0o755)
        jobs_db, audit_db = str(d / "jobs.db"), str(d / "audit.db")
        with tms.Store(jobs_db, audit_db) as s:
            s.create_job("u", 1, "Trans-Begin", ["c1"])
            s.record_audit("u", "Trans-Begin")
        if what == "file":
            os.chmod(d, 0o777)
            for name in os.listdir(d):
                os.chmod(d / name, 0o444)
        else:
            for name in os.listdir(d):
                os.chmod(d / name, 0o666)
            os.chmod(d, 0o555)
        before = {n: (d / n).read_bytes() for n in os.listdir(d)}
        try:
            out = run_unprivileged(world_readable_binding, READ_ONLY_PROBE, [jobs_db, audit_db, cluster.base])
        finally:
            os.chmod(d, 0o755)
        assert "open" not in out, out
        assert (out["jobs"], out["trail"], out["verify"]) == (1, 1, True)
        for name in ("create_job", "record_audit", "cache_put"):
            assert out[name][:2] == ["ReadOnlyError", 12], out
            assert "read-only" in out[name][2]
        assert out["set_action"][:2] == [503, "READ_ONLY"], out
        assert cluster.requests == []  # refused before anything was sent
        assert {n: (d / n).read_bytes() for n in before} == before
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- 2. recovery does not depend on the time zone ---------------------------------------------

def test_2_a_store_opened_in_another_time_zone_leaves_a_live_job_alone(tmp_path):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    tms.Store(jobs_db, audit_db).close()
    with StubCluster(slow_seconds=4.0) as slow:
        # A Set Action in flight in a UTC process (its job IN_PROGRESS while the cluster answers).
        sender = subprocess.Popen([sys.executable, "-c", SLOW_SET_ACTION, jobs_db, audit_db, slow.base],
                                  env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"), TZ="UTC"),
                                  stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while rows(jobs_db, "SELECT COUNT(*) FROM jobs WHERE set_action_job = 1") != [(1,)]:
            assert time.monotonic() < deadline, "the Set Action never recorded its job"
            time.sleep(0.02)
        # Kolkata is 5.5 hours ahead: compared as local text, the job would look hours old.
        opener = python(f"""
            import tms
            s = tms.Store({jobs_db!r}, {audit_db!r}, interrupted_after_s=600)
            print(s.recover_interrupted(), s.get_user_jobs("alice")[0]["status"])
        """, env={"TZ": "Asia/Kolkata"})
        out, err = opener.communicate(timeout=60)
        assert opener.returncode == 0, err
        assert out.split() == ["0", "IN_PROGRESS"]
        assert json.loads(sender.communicate(timeout=60)[0])[0] == 200


def test_2_a_late_outcome_replaces_a_recovery_verdict_cleanly(tmp_path):
    # The cluster answers only when told to: the verdict always comes first, however slow the disk.
    with StubCluster(slow_seconds=60.0) as slow:
        tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")).close()
        proc = python(SLOW_SET_ACTION, str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), slow.base, stderr=None)
        try:
            assert slow.slow_arrived.wait(30), "the Set Action never reached the cluster"
            # Another process with a short interrupted_after_s decides the job was interrupted
            # once it is older than that, at open or by a later call (polled: the job's age is
            # the condition)...
            with tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), request_timeout_s=1,
                           interrupted_after_s=2) as s:
                deadline = time.monotonic() + 30
                while rows(str(tmp_path / "jobs.db"), "SELECT status FROM jobs") != [("FAILED",)]:
                    assert time.monotonic() < deadline, "recovery never judged the job interrupted"
                    time.sleep(0.05)
                    s.recover_interrupted()
                [(job_id, status, message)] = rows(str(tmp_path / "jobs.db"), "SELECT job_id, status, error_message FROM jobs")
                assert status == "FAILED" and "interrupted" in message
                # ...and then the call it judged dead answers.
                slow.release()
                answer = json.loads(proc.stdout.readline())
                proc.wait(timeout=30)
                assert answer[0] == 200
                got = s.get_job(job_id)
                assert (got["status"], got["error_message"], got["http_status"]) == ("SUCCESS", None, 200)
                assert "success" in got["response_summary"]
        finally:
            slow.release()
            proc.kill()
            proc.wait()


# --- 3. the audit chain through the drop-ins --------------------------------------------------

DROPIN_KEYED = """
import json, logging, sys
logging.basicConfig(level=logging.ERROR, stream=sys.stdout, format="LOG %(message)s")
from tms import audit_db
print(json.dumps({"id": audit_db.log_action("alice", "Trans-Begin", ["c1"])}), flush=True)
"""


def test_3_the_drop_ins_take_the_hmac_key_and_a_keyed_chain_refuses_unkeyed_appends(tmp_path):
    key = "dropin-hmac-key-0123456789"
    env = {"TMS_JOBS_DB": str(tmp_path / "jobs.db"), "TMS_AUDIT_DB": str(tmp_path / "audit.db")}
    keyed = python(DROPIN_KEYED, env=dict(env, TMS_AUDIT_HMAC_KEY=key))
    out, err = keyed.communicate(timeout=60)
    assert keyed.returncode == 0 and json.loads(out)["id"], out + err
    [(h,)] = rows(str(tmp_path / "audit.db"), "SELECT chain_hash FROM audit_log")
    assert h.startswith("hmac-sha256:")
    # Without the key the drop-in refuses to append (and says why), leaving the log as it was.
    unkeyed = python(DROPIN_KEYED, env=env)
    out, err = unkeyed.communicate(timeout=60)
    lines = out.splitlines()
    assert json.loads(lines[-1]) == {"id": None}, out + err
    assert any("audit_hmac_key" in line for line in lines[:-1]), out
    # The key can come from a file too, and from configure() before first use.
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    from_file = python(DROPIN_KEYED, env=dict(env, TMS_AUDIT_HMAC_KEY_FILE=str(key_file)))
    out, err = from_file.communicate(timeout=60)
    assert json.loads(out.splitlines()[-1])["id"], out + err
    configured = python(f"""
        import tms
        tms.configure(audit_hmac_key={key!r})
        from tms import audit_db
        assert audit_db.log_action("carol", "PE-Enable")
        s = tms.Store({str(tmp_path / "jobs.db")!r}, {str(tmp_path / "audit.db")!r}, audit_hmac_key={key!r})
        v = s.verify_audit()
        assert v["ok"] and v["checked"] == 3, v
    """, env=env)
    out, err = configured.communicate(timeout=60)
    assert configured.returncode == 0, out + err


def test_3_configure_after_first_use_is_refused_and_every_option_is_accepted(tmp_path, dropin_paths):
    from tms import _shared, jobs
    saved = dict(_shared._configured)
    _shared._reset_for_tests({})  # stores earlier tests opened in this process
    try:
        tms.configure(synchronous="NORMAL", busy_timeout_ms=1000, journal_size_limit_bytes=-1,
                      max_idle_connections=2, max_page_count=0, allowed_clusters=["http://127.0.0.1:9/"],
                      request_timeout_s=5, connect_timeout_s=2, max_response_bytes=1024,
                      interrupted_after_s=60, audit_hmac_key=None, ca_bundle=None)
        assert jobs.create_job("u", 1, "Trans-Begin", ["c1"])
        with pytest.raises(tms.InvalidInputError, match="already"):
            tms.configure(synchronous="FULL")
        with pytest.raises(tms.InvalidInputError, match="unknown store option"):
            tms.configure(synchronus="FULL")
    finally:
        _shared._reset_for_tests(saved)


# --- 4. options out of range ------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("interrupted_after_s", 2**64 - 1), ("interrupted_after_s", 2**63), ("busy_timeout_ms", 2**31),
    ("busy_timeout_ms", 2**63), ("connect_timeout_s", 2**64 - 1), ("request_timeout_s", 2**64 - 1),
    ("max_response_bytes", 2**64 - 1), ("max_idle_connections", 2**64 - 1), ("max_page_count", 2**40),
    ("journal_size_limit_bytes", -(2**63)), ("busy_timeout_ms", -1), ("audit_hmac_key", "short"),
])
def test_4_options_out_of_range_are_refused_at_open(tmp_path, option, value):
    with pytest.raises(tms.InvalidInputError) as info:
        tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), **{option: value})
    assert option in str(info.value)
    assert not (tmp_path / "jobs.db").exists()


def test_4_the_largest_accepted_timeouts_do_not_panic_inside_a_set_action(tmp_path, cluster):
    with open_store(tmp_path, cluster, connect_timeout_s=3600, request_timeout_s=3600,
                    interrupted_after_s=30 * 24 * 3600, busy_timeout_ms=600000) as s:
        status, body = s.set_action(request(cluster), "alice", idempotency_key="k")
        assert status == 200, body
        assert s.set_action(request(cluster), "alice", idempotency_key="k") == (status, body)


# --- 5. the Set Action path applies the input rules --------------------------------------------

@pytest.mark.parametrize("action, code", [
    ("Trans\t-Begin", "INVALID_INPUT"), ("A" * 400, "TOO_LARGE"), ("B" * (10 * 1024 * 1024), "TOO_LARGE"),
])
def test_5_action_names_breaking_the_identifier_rules_are_refused_before_anything_is_stored(
        tmp_path, cluster, action, code):
    with open_store(tmp_path, cluster) as s:
        sizes = {p: os.path.getsize(tmp_path / p) for p in ("jobs.db", "audit.db")}
        status, body = s.set_action(request(cluster, action=action), "alice")
        assert (status, body["error_code"]) == (400, code)
        assert len(json.dumps(body)) < 1000  # the refusal does not echo the name in full
        assert cluster.requests == []
        assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM jobs") == [(0,)]
        status, body = s.set_action(request(cluster, action="Z" * 200), "alice")  # unknown, in bounds
        assert body["error_code"] == "UNKNOWN_ACTION" and len(body["message"]) < 300
    for name in os.listdir(tmp_path):
        assert os.path.getsize(tmp_path / name) < 1024 * 1024, name
    assert all(len(r[3] or "") < 1000 for r in audit_rows(tmp_path))
    assert all(r[1] in ("proxy_fetch", "Trans-Begin") for r in audit_rows(tmp_path))


def test_5_a_refusal_records_a_bounded_list_of_ids(tmp_path, cluster):
    ids = [f"{i:032x}" for i in range(20_000)]
    with open_store(tmp_path, cluster) as s:
        status, body = s.set_action(dict(request(cluster, cids=ids), url="http://127.0.0.9/x"), "alice")
        assert status == 403
        [row] = s.audit_trail()
        assert len(row["customer_ids"]) == 1000
        assert "20000 customer IDs; the first 1000 are listed" in row["error_message"]


# --- 6. the allowlist's path rule --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/tms/..;/admin", "/tms/%5c../admin", "/tms/%252e%252e/admin",
                                  "/tms/%00/ok", "/tms/\u2025/admin", "/tms/%2e%2e/admin", "/tms/a;b",
                                  "/tms/ok?x=%0d%0aInjected:1"])
def test_6_paths_that_a_server_may_normalize_differently_are_refused(tmp_path, cluster, path):
    with open_store(tmp_path, cluster, allowed_clusters=[cluster.base + "/tms/"]) as s:
        status, body = s.set_action(request(cluster, path=path), "mallory")
        assert (status, body["error_code"]) == (403, "URL_NOT_ALLOWED"), body
    assert cluster.requests == []


def test_6_ordinary_query_strings_keep_working(tmp_path, cluster):
    with open_store(tmp_path, cluster, allowed_clusters=[cluster.base + "/tms/"]) as s:
        status, body = s.set_action({"url": cluster.base + "/tms/v1/status?cid=a1&app=ALL&q=a%20b,c",
                                     "token": TOKEN}, "alice")
        assert status == 200, body
    assert cluster.requests[-1]["path"] == "/tms/v1/status?cid=a1&app=ALL&q=a%20b,c"


# --- 7. the bearer token never reaches a file --------------------------------------------------

def all_bytes(tmp_path):
    return b"".join((tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if (tmp_path / n).is_file())


def test_7_a_token_with_quotes_and_backslashes_echoed_as_json_is_redacted(tmp_path, cluster):
    token = 'tok"en\\with/quote-0123456789'
    with open_store(tmp_path, cluster) as s:
        status, body = s.set_action(request(cluster, "/echo-json", token=token), "alice")
        assert status == 200
        assert "quote-0123456789" not in json.dumps(body)
        s.set_action(request(cluster, "/unauthorized", token=token), "alice")
    data = all_bytes(tmp_path)
    for form in (token, json.dumps(token)[1:-1], json.dumps(json.dumps(token))[1:-1]):
        assert form.encode() not in data
    assert b"0123456789" not in data


@pytest.mark.parametrize("before_limit", [1, 5, 12])
def test_7_a_token_straddling_the_response_limit_leaves_no_prefix(tmp_path, cluster, before_limit):
    token = "abcdefghijklmnopqrstuvwxyz-token"
    limit = 200
    at = limit - len("Bearer ") - before_limit  # the token starts `before_limit` bytes before the cut
    with open_store(tmp_path, cluster, max_response_bytes=limit) as s:
        status, body = s.set_action(request(cluster, f"/straddle?at={at}", token=token), "alice")
        assert status == 500 and "was cut" in body["message"]
        prefix = token[:before_limit]
        summary = job(tmp_path, body["job_id"])["response_summary"]
        assert not summary.endswith(prefix), summary
    assert token[: max(before_limit, 4)].encode() + b"\n" not in all_bytes(tmp_path)


def test_7_a_token_too_short_to_redact_is_refused_before_sending(tmp_path, cluster):
    with open_store(tmp_path, cluster) as s:
        status, body = s.set_action(request(cluster, token="1234567"), "alice")
        assert (status, body["error_code"]) == (400, "TOKEN_TOO_SHORT")
        assert cluster.requests == []
        assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM jobs") == [(0,)]
        status, _ = s.set_action(request(cluster, token="12345678"), "alice")
        assert status == 200
    assert tms.errors.BY_STATUS[17] is tms.TokenTooShortError


# --- 8. an idempotency key reused for another request -----------------------------------------

def test_8_a_key_reused_for_a_different_request_gets_422_and_sends_nothing(tmp_path, cluster):
    with open_store(tmp_path, cluster) as s:
        first = s.set_action(request(cluster), "alice", idempotency_key="k-1")
        assert first[0] == 200
        for other in (request(cluster, action="PE-Enable"), request(cluster, cids=["c9"]),
                      request(cluster, "/fail")):
            status, body = s.set_action(other, "alice", idempotency_key="k-1")
            assert (status, body["error_code"]) == (422, "IDEMPOTENCY_KEY_REUSED"), body
        # The identical repeat (a new token, the same IDs in another order) replays the first.
        again = s.set_action(request(cluster, cids=["c2", "c1", "c1"], token="another-token-0123"), "alice",
                             idempotency_key="k-1")
        assert again == first
    assert len(cluster.requests) == 1
    assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM jobs") == [(1,)]


# --- 9. upstream answers read as the legacy read them, numbers exactly -------------------------

def test_9_a_bom_big_numbers_and_no_answer(tmp_path, cluster):
    cluster.server.slow_seconds = 60  # /slow answers only after the test: the 1 s timeout always fires
    with open_store(tmp_path, cluster, request_timeout_s=1, interrupted_after_s=10) as s:
        status, body = s.set_action(request(cluster, "/bom"), "alice")
        assert status == 200 and body["data"] == {"success": True, "n": 1}
        assert job(tmp_path, body["job_id"])["status"] == "SUCCESS"
        status, body = s.set_action(request(cluster, "/bignum"), "alice")
        assert body["data"]["big"] == 123456789012345678901234567890
        summary = job(tmp_path, body["job_id"])["response_summary"]
        assert "123456789012345678901234567890" in summary and "1.10" in summary
        status, body = s.set_action(request(cluster, "/slow"), "alice")
        assert status == 408
        row = job(tmp_path, body["job_id"])
        assert row["response_summary"] != "In progress..." and "timeout" in row["response_summary"]


# --- 10. customer IDs from CSV ----------------------------------------------------------------

def test_10_csv_headers_and_rfc_4180_quoting():
    for header in ("cid", "Customer ID", "CustomerId", "customer_id", "ID"):
        assert tms.parse_customer_ids(f"{header}\nc1\nc2\n", csv=True) == ["c1", "c2"], header
    text = 'cid,comment\r\n"c1","x, y"\r\nc2,"line\nbreak"\r\n"c,3",z\r\n'
    assert tms.parse_customer_ids(text, csv=True) == ["c1", "c2", "c,3"]


# --- 11. a newer schema is refused before anything is written ---------------------------------

def test_11_a_newer_file_is_left_byte_for_byte_unchanged(tmp_path):
    path = tmp_path / "jobs.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE future (x)")
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(tms.SchemaTooNewError) as info:
        tms.Store(str(path), str(tmp_path / "audit.db"))
    # Its own error (status 7), naming the version found, and the file as it was.
    assert info.value.status == 7 and "99" in str(info.value) and "not changed" in str(info.value)
    assert path.read_bytes() == before
    assert rows(str(path), "PRAGMA user_version") == [(99,)]
    assert rows(str(path), "PRAGMA journal_mode") == [("delete",)]
    assert not (tmp_path / "jobs.db-wal").exists()


# --- 12. https clusters with an internal CA ---------------------------------------------------

@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1, made here with openssl."""
    d = tmp_path_factory.mktemp("ca")
    subprocess.run([os.path.join(ROOT, "scripts", "make-test-ca.sh"), str(d), "tms test internal CA"], check=True)
    return d


@pytest.fixture
def https_cluster(internal_ca):
    import ssl

    stub = StubCluster()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(internal_ca / "server.pem", internal_ca / "server.key")
    stub.server.socket = ctx.wrap_socket(stub.server.socket, server_side=True)
    stub.base = stub.base.replace("http://", "https://")
    with stub:
        yield stub


HTTPS_PROBE = """
import json, sys, tms
s = tms.Store(sys.argv[1], sys.argv[2], allowed_clusters=[sys.argv[3]])
print(json.dumps(s.set_action({"url": sys.argv[3] + "/tms/v1/set/action", "token": "token-0123456789",
                               "isPost": True, "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "tls")))
"""


def test_12_https_to_a_cluster_with_an_internal_ca(tmp_path, https_cluster, internal_ca):
    # Not trusted by default (the CA is in no trust store)...
    with open_store(tmp_path, https_cluster) as s:
        status, body = s.set_action(request(https_cluster), "tls")
        assert status == 500 and "job_id" in body
        assert job(tmp_path, body["job_id"])["status"] == "FAILED"
    # ...trusted through the ca_bundle option...
    with open_store(tmp_path, https_cluster, ca_bundle=str(internal_ca / "ca.pem")) as s:
        status, body = s.set_action(request(https_cluster), "tls")
        assert (status, body["data"]["processed"]) == (200, 2), body
    # ...and through the system's trust store (SSL_CERT_FILE points OpenSSL-style lookups at it).
    probe = subprocess.run(
        [sys.executable, "-c", HTTPS_PROBE, str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), https_cluster.base],
        env=dict(os.environ, PYTHONPATH=BINDINGS, SSL_CERT_FILE=str(internal_ca / "ca.pem")),
        capture_output=True, text=True, timeout=60)
    assert json.loads(probe.stdout)[0] == 200, probe.stdout + probe.stderr
    # A ca_bundle that is not a PEM file is refused at open.
    with pytest.raises(tms.InvalidInputError, match="ca_bundle"):
        open_store(tmp_path, https_cluster, ca_bundle=str(internal_ca / "ext.cnf"))


# --- what a hostile review found after the first round -----------------------------------------

def chain_hash(fields):
    """The plain SHA-256 a forger can compute (see audit_chain.rs: compact JSON of the fields)."""
    import hashlib

    return "sha256:" + hashlib.sha256(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def forge_chained_row(con, fields):
    """Append a row with chain columns a forger computed. `fields` is the chain's field list:
    [seq, prev, user_id, action_type, customer_ids, timestamp, ip_address, status,
    error_message, duration_ms]."""
    con.execute("INSERT INTO audit_log (user_id, action_type, customer_ids, timestamp, ip_address, status, "
                "error_message, duration_ms, chain_seq, chain_prev, chain_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (*fields[2:], fields[0], fields[1], chain_hash(fields)))


def test_3_plain_rows_forged_after_keyed_rows_are_found_and_block_unkeyed_writers(tmp_path):
    key = "k" * 32
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    s = tms.Store(jobs_db, audit_db, audit_hmac_key=key)
    for _ in range(3):
        s.record_audit("alice", "PE-Enable", ["c1"])
    con = sqlite3.connect(audit_db)
    seq, prev = con.execute("SELECT chain_seq, chain_hash FROM audit_log ORDER BY chain_seq DESC LIMIT 1").fetchone()
    f = [seq + 1, prev, "mallory", "PE-Direct", '["vip"]', "2026-01-01 00:00:00", "1.2.3.4", "success", None, 5]
    forge_chained_row(con, f)
    con.commit()
    con.close()
    v = s.verify_audit()
    assert not v["ok"] and v["first_problem"]["seq"] == seq + 1, v
    assert "without the HMAC key" in v["first_problem"]["detail"]
    s.close()
    # A store without the key must not take the forged plain head as leave to append.
    with tms.Store(jobs_db, audit_db) as unkeyed:
        with pytest.raises(tms.AuditKeyMismatchError):
            unkeyed.record_audit("bob", "PE-Enable")


def test_3_a_forged_digest_row_cannot_vouch_for_forged_legacy_rows(tmp_path, fixture_copy):
    audit_db = fixture_copy("audit.db")
    s = tms.Store(str(tmp_path / "jobs.db"), audit_db)
    s.record_audit("alice", "PE-Enable")
    assert s.verify_audit()["ok"]
    con = sqlite3.connect(audit_db)
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("INSERT INTO audit_log (id, user_id, action_type, timestamp, status) "
                "VALUES (0, 'ghost', 'PE-Enable', '2027-01-01 00:00:00', 'success')")
    # The forger recomputes a digest over the legacy rows, ghost included, as a chained row.
    seq, prev = con.execute("SELECT chain_seq, chain_hash FROM audit_log ORDER BY chain_seq DESC LIMIT 1").fetchone()
    f = [seq + 1, prev, "system", "audit_legacy_digest", None, "2027-01-01 00:00:00", None, "success",
         "rows=1;sha256=" + "0" * 64, None]
    forge_chained_row(con, f)
    con.commit()
    con.close()
    v = s.verify_audit()
    assert not v["ok"] and "legacy digest" in v["first_problem"]["detail"], v
    s.close()


TOGGLER = """
import random, sqlite3, sys, time
rng = random.Random(int(sys.argv[2]))
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    con = sqlite3.connect(sys.argv[1], timeout=30)
    con.execute("BEGIN IMMEDIATE")
    time.sleep(rng.uniform(0.05, 0.3))
    con.rollback()
    con.close()
    time.sleep(rng.uniform(0.0, 0.1))
"""

SET_ACTION_WORKER = """
import json, sys, threading, tms
s = tms.Store(sys.argv[1], sys.argv[2], allowed_clusters=[sys.argv[3]], busy_timeout_ms=int(sys.argv[6]))
ids = []
def work(t):
    for i in range(int(sys.argv[5])):
        status, body = s.set_action({"url": sys.argv[3] + "/tms/v1/set/action", "token": "token-0123456789",
                                     "isPost": True, "postData": {"action": "PE-Enable", "cids": [f"{sys.argv[4]}-{t}-{i}"]}},
                                    f"u{sys.argv[4]}")
        ids.append(body.get("job_id"))
threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(ids))
"""


def test_1_every_outcome_reaches_the_audit_log_exactly_once_while_processes_race_a_flapping_lock(tmp_path, cluster):
    """Several processes deliver each other's outbox rows while audit.db is locked on and off:
    no row may be lost (a reused outbox id) or written twice (a stale read of the outbox)."""
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    tms.Store(jobs_db, audit_db).close()
    env = dict(os.environ, PYTHONPATH=BINDINGS)
    toggler = subprocess.Popen([sys.executable, "-c", TOGGLER, audit_db, "7", "8"], env=env)
    per_thread, procs_n = 12, 3
    workers = [subprocess.Popen([sys.executable, "-c", SET_ACTION_WORKER, jobs_db, audit_db, cluster.base, str(p),
                                 str(per_thread), "100" if p % 2 else "60000"],
                                env=env, stdout=subprocess.PIPE, text=True) for p in range(procs_n)]
    job_ids = []
    for w in workers:
        out, _ = w.communicate(timeout=600)
        assert w.returncode == 0
        job_ids += json.loads(out)
    toggler.wait(timeout=60)
    assert all(job_ids) and len(set(job_ids)) == procs_n * 3 * per_thread
    with tms.Store(jobs_db, audit_db) as s:
        s.recover_interrupted()
        assert s.verify_audit()["ok"]
    assert rows(jobs_db, "SELECT status, COUNT(*) FROM jobs GROUP BY status") == [("SUCCESS", len(job_ids))]
    assert undelivered(jobs_db, audit_db) == 0
    per_row = rows(audit_db, "SELECT customer_ids, COUNT(*) FROM audit_log WHERE action_type = 'PE-Enable' "
                             "GROUP BY customer_ids HAVING COUNT(*) != 1")
    assert per_row == [], per_row  # none written twice
    assert rows(audit_db, "SELECT COUNT(*) FROM audit_log WHERE action_type = 'PE-Enable'") == [(len(job_ids),)]


def test_7_echoes_that_shorten_the_answer_do_not_pull_a_token_under_the_cut(tmp_path, cluster):
    token = "SECRETTOKEN0123456789abcdefghijklmnopqrstuv"
    limit = 100
    with open_store(tmp_path, cluster, max_response_bytes=limit) as s:
        status, body = s.set_action(request(cluster, f"/echo-thrice?at={limit - 2 * len(token) - 5}", token=token), "a")
        assert status == 500
        assert "SECRETTOKEN" not in json.dumps(body)
        # A careless caller's URL with the token in it is not stored as it is either.
        s.set_action(request(cluster, f"/tms/v1/set/action?access_token={token}", token=token), "a")
    assert b"SECRETTOKEN" not in all_bytes(tmp_path)


def answered_while_jobs_db_is_locked(tmp_path, cluster, **keys):
    """A Set Action whose outcome meets jobs.db locked past the busy timeout: the lock comes while
    the call is under way (the job itself was recorded before it), the cluster holding its answer
    until then. Returns the store and the answer, given while the lock was still held."""
    store = open_store(tmp_path, cluster, busy_timeout_ms=200)
    cluster.server.slow_seconds = 60
    answer = {}
    call = threading.Thread(target=lambda: answer.setdefault(
        "v", store.set_action(request(cluster, "/slow"), "alice", **keys)))
    call.start()
    assert cluster.slow_arrived.wait(30)
    with write_lock_held(str(tmp_path / "jobs.db")):
        cluster.release()
        call.join(timeout=60)
        status, body = answer["v"]
        assert status == 200 and "warning" in body, body
        audited = audit_rows(tmp_path)
    return store, body, audited


def test_1_an_outcome_jobs_db_will_not_take_is_kept_and_recorded_later(tmp_path, cluster):
    store, body, audited = answered_while_jobs_db_is_locked(tmp_path, cluster, idempotency_key="k-busy")
    assert "recorded" in body["warning"], body
    # The audit log had the row already at the answer; the job waits for jobs.db.
    assert [r[:3] for r in audited] == [("alice", "Trans-Begin", "success")]
    assert job(tmp_path, body["job_id"])["status"] == "IN_PROGRESS"
    # The repeat is answered from the recorded outcome, without sending again.
    sent = len(cluster.requests)
    again = store.set_action(request(cluster, "/slow"), "alice", idempotency_key="k-busy")
    assert again[0] == 200 and again[1]["job_id"] == body["job_id"] and len(cluster.requests) == sent
    row = job(tmp_path, body["job_id"])
    assert (row["status"], row["http_status"]) == ("SUCCESS", 200)
    assert len(audit_rows(tmp_path)) == 1
    store.close()


def test_1_an_audit_row_written_alone_is_not_written_again_when_its_outcome_commit_reappears(tmp_path, cluster):
    # An outcome commit that fails with an I/O error after its WAL frames were written comes back
    # at the next WAL recovery, outbox row included. The audit row written alone meanwhile carries
    # the receipt that outbox row would get, so its delivery skips it.
    store, body, _ = answered_while_jobs_db_is_locked(tmp_path, cluster)
    assert "its audit row was written" in body["warning"], body
    [(user, action, cids, ts, ip, st, err, ms)] = rows(str(tmp_path / "audit.db"),
        "SELECT user_id, action_type, customer_ids, timestamp, ip_address, status, error_message, duration_ms FROM audit_log")
    record = json.dumps({"user_id": user, "action_type": action, "customer_ids": cids, "timestamp": ts,
                         "ip_address": ip, "status": st, "error_message": err, "duration_ms": ms})
    con = sqlite3.connect(str(tmp_path / "jobs.db"))
    with con:
        con.execute("INSERT INTO audit_outbox (delivery_key, record) VALUES (?, ?)", ("job:" + body["job_id"], record))
    con.close()
    store.recover_interrupted()      # delivers what waits in the outbox
    store.close()
    assert len(audit_rows(tmp_path)) == 1
    assert rows(str(tmp_path / "jobs.db"), "SELECT COUNT(*) FROM audit_outbox") == [(0,)]
