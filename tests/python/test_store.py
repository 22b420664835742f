"""tms.Store over the real library and real files."""

import json
import os
import threading

import pytest

import tms
from conftest import ROOT, durability_default, python, rows, store_settings


def test_a_job_round_trips_with_unique_customers(store, loc):
    job = store.create_job("alice", 1, "Trans-Begin", ["c2", "c1", "c2", " c1 "],
                           cluster_url="https://c.example", request_payload={"action": "Trans-Begin"})
    assert set(job) == {"job_id", "user_id", "action_code", "action_name", "customer_count", "created_at"}
    assert job["customer_count"] == 2
    assert store.get_job_customers(job["job_id"]) == ["c1", "c2"]
    details = store.get_job(job["job_id"])
    assert details["request_payload"] == {"action": "Trans-Begin"}
    assert details["status"] == "IN_PROGRESS"
    store.update_job(job["job_id"], "SUCCESS", http_status=200)
    listed = store.get_user_jobs("alice")
    assert [j["status"] for j in listed] == ["SUCCESS"]
    assert loc.rows("SELECT COUNT(*) FROM job_customers") == [(2,)]


def test_create_job_answers_what_the_library_stored_in_one_foreign_call(store, monkeypatch):
    """The answer is built from the library's buffers and the arguments as it saw them (no JSON,
    no string to free): one call into libtms per create_job, and the same fields get_job reads."""
    from tms import _native
    calls = []
    for name in ("tms_create_job_packed", "tms_create_job", "tms_string_free"):
        real = getattr(_native.lib, name)
        monkeypatch.setattr(_native.lib, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    job = store.create_job(b"bob", True, "PE-Enable", (" x2", 7, "x2", ""), status="SUCCESS")
    assert calls == ["tms_create_job_packed"]
    monkeypatch.undo()
    stored = store.get_job(job["job_id"])
    assert job == {k: stored[k] for k in job}
    assert job == {"job_id": job["job_id"], "user_id": "bob", "action_code": 1, "action_name": "PE-Enable",
                   "customer_count": 2, "created_at": stored["created_at"]}
    assert stored["status"] == "SUCCESS"
    assert store.get_job_customers(job["job_id"]) == ["7", "x2"]


def test_durability_defaults_to_full_on_the_stores_own_connections(store, loc):
    store.create_job("alice", 1, "Trans-Begin", ["c1"])
    assert store_settings(store.metrics()) == durability_default(loc)


@pytest.mark.sqlite_only  # a SQLite option
def test_synchronous_normal_reaches_the_stores_connections(loc):
    with loc.open(synchronous="NORMAL") as s:
        got = store_settings(s.metrics())
    assert (got["jobs.synchronous"], got["audit.synchronous"]) == ("NORMAL", "NORMAL")


def test_the_drop_ins_store_defaults_to_full(loc):
    """tms.shared_store(), the drop-ins' store, configured from TMS_* alone, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMS_")}
    env.update(TMS_JOBS_DB=loc.jobs, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    if loc.audit:
        env["TMS_AUDIT_DB"] = loc.audit
    proc = python("""
        import tms
        from tms import jobs
        jobs.create_job("alice", 1, "Trans-Begin", ["c1"])
        print(tms.shared_store().metrics())
    """, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert store_settings(out) == durability_default(loc)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda s: s.create_job("", 1, "Trans-Begin", ["c1"]), tms.InvalidInputError),
        (lambda s: s.create_job("u", 1, "Trans-Begin", ["c1", "c\x01"]), tms.InvalidInputError),
        (lambda s: s.create_job("u\ud800", 1, "Trans-Begin", ["c1"]), tms.InvalidUtf8Error),
        (lambda s: s.create_job("u\0x", 1, "Trans-Begin", ["c1"]), tms.InvalidInputError),
        (lambda s: s.create_job("u", 1, "Trans-Begin", [f"c{i}" for i in range(100_001)]), tms.TooLargeError),
        (lambda s: s.create_job("u", 7, "Trans-Begin", ["c1"]), tms.InvalidInputError),
        (lambda s: s.create_job("u", 2**40, "Trans-Begin", ["c1"]), tms.InvalidInputError),
        (lambda s: s.create_job("u", 1, "Trans-Begin", "c1"), tms.InvalidInputError),
        (lambda s: s.get_user_jobs("u", -1), tms.InvalidInputError),
        (lambda s: s.get_user_jobs("u", 2**70), tms.InvalidInputError),
        (lambda s: s.get_job("missing"), tms.NotFoundError),
        (lambda s: s.update_job("missing", "FAILED"), tms.NotFoundError),
        (lambda s: s.record_audit("u", "x", status="ok"), tms.InvalidInputError),
        (lambda s: s.record_audit("u", "x", duration_ms=-5), tms.InvalidInputError),
        (lambda s: s.audit_trail(limit=10**6), tms.InvalidInputError),
    ],
)
def test_bad_input_raises_its_own_class_and_writes_nothing(store, loc, call, exc):
    with pytest.raises(exc) as info:
        call(store)
    assert str(info.value)  # the library's message
    assert isinstance(info.value, tms.TmsError)
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(0,)]
    assert loc.rows("SELECT COUNT(*) FROM audit_log") == [(0,)]


def test_each_status_code_has_its_own_exception_class():
    import re

    with open(os.path.join(ROOT, "include", "tms.h")) as f:
        header = dict((int(v), n) for n, v in re.findall(r"^\s*(TMS_STATUS_\w+) = (\d+),", f.read(), re.M))
    classes = tms.errors.BY_STATUS
    assert sorted(classes) == sorted(code for code in header if code != 0)
    assert len(set(classes.values())) == len(classes)
    for code, cls in classes.items():
        assert cls.status == code
        assert tms._native.lib.tms_status_name(code).decode() == header[code]


def test_unknown_action_and_action_spellings():
    assert tms.map_action("TRANS_BEGIN") == 1
    assert tms.get_action_code("Tran-Begin") == 1
    assert tms.get_action_code("pe finalize") == 4
    assert tms.get_action_code("Nope") is None
    with pytest.raises(tms.UnknownActionError, match="unknown action"):
        tms.map_action("Nope")


@pytest.mark.sqlite_only
def test_create_false_opens_an_existing_store_only(tmp_path, monkeypatch):
    jobs_db, audit_db = str(tmp_path / "jobs.db"), str(tmp_path / "audit.db")
    with pytest.raises(tms.CantOpenError, match="tms init") as refused:
        tms.Store(jobs_db, audit_db, create=False)
    assert jobs_db in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # nothing created
    tms.Store(jobs_db, audit_db).close()  # the default creates, as the app needs
    with tms.Store(jobs_db, audit_db, create=False) as s:
        s.record_audit("alice", "Trans-Begin")
    os.remove(audit_db)
    with pytest.raises(tms.CantOpenError, match="audit.db"):
        tms.Store(jobs_db, audit_db, create=False)
    assert not os.path.exists(audit_db)
    # The drop-ins' environment variable.
    from tms import _shared
    monkeypatch.setenv("TMS_CREATE", "0")
    assert _shared._from_environment()["create"] is False
    monkeypatch.setenv("TMS_CREATE", "maybe")
    with pytest.raises(tms.InvalidInputError, match="TMS_CREATE"):
        _shared._from_environment()


def test_opening_errors_are_specific(tmp_path):
    with pytest.raises(tms.CantOpenError, match="does not exist"):
        tms.Store(str(tmp_path / "no" / "jobs.db"), str(tmp_path / "audit.db"))
    with pytest.raises(TypeError, match="synchronus"):  # options are keyword arguments
        tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), synchronus="NORMAL")
    with pytest.raises(tms.InvalidInputError, match="synchronous"):
        tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), synchronous="OFF")
    (tmp_path / "junk.db").write_bytes(b"x" * 4096)
    with pytest.raises(tms.NotADatabaseError):
        tms.Store(str(tmp_path / "junk.db"), str(tmp_path / "audit.db"))


def test_audit_rows_and_whole_id_matching(store):
    store.record_audit("ann", "Trans-Begin", ["c1", "c2"], "10.0.0.1", duration_ms=5)
    store.record_audit("ann", "PE-Enable", "c10", status="failure", error_message="nope")
    trail = store.audit_trail(customer_id="c1")
    assert [r["customer_ids"] for r in trail] == [["c1", "c2"]]
    assert store.audit_stats()["success_rate_percent"] == 50.0
    assert store.action_types() == ["PE-Enable", "Trans-Begin"]
    assert store.clear_audit_logs() == 2


def test_threads_share_one_store(store, loc):
    errors = []

    def work(t):
        try:
            for i in range(40):
                store.create_job(f"user{t}", 3, "T-Enable", [f"a{i}", f"b{i}", f"a{i}"])
                store.record_audit(f"user{t}", "T-Enable", [f"a{i}"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(240,)]
    assert loc.rows("SELECT COUNT(*) FROM job_customers") == [(480,)]


def test_close_is_idempotent_and_calls_after_close_raise(loc):
    s = loc.open()
    s.close()
    s.close()
    with pytest.raises(tms.TmsError, match="closed"):
        s.get_user_jobs("u")


def test_the_150_id_csv_fixture(store):
    from conftest import FIXTURES
    import os

    with open(os.path.join(FIXTURES, "dummy_batch_150_customers.csv")) as f:
        ids = tms.parse_customer_ids(f.read(), csv=True)
    assert len(ids) == 150
    job = store.create_job("op", 1, "Trans-Begin", ids)
    assert job["customer_count"] == 150
    assert store.get_job_customers(job["job_id"]) == sorted(ids)


def test_cache_round_trip(store):
    assert store.cache_get("c1") is None
    store.cache_put("c1", {"apps": ["a"]})
    assert store.cache_get("c1") == {"apps": ["a"]}
    batch = store.cache_get_batch(["c1", "c2"])
    assert batch == {"hits": {"c1": {"apps": ["a"]}}, "misses": ["c2"], "hit_count": 1, "miss_count": 1}
    assert store.cache_stats()["total_entries"] == 1
    assert store.cache_invalidate() == 1


@pytest.mark.sqlite_only
def test_audit_chain_through_python(tmp_path):
    key = "python-hmac-key-42"
    s = tms.Store(str(tmp_path / "jobs.db"), str(tmp_path / "audit.db"), audit_hmac_key=key)
    for i in range(3):
        s.record_audit("ann", "Trans-Begin", [f"c{i}"])
    check = s.verify_audit()
    assert check["ok"] and check["checked"] == 3 and check["head"]["hash"].startswith("hmac-sha256:")
    anchor = check["head"]
    assert s.verify_audit(anchor)["ok"]
    assert s.clear_audit_logs() == 3
    cut = s.verify_audit(anchor)  # the anchored row went with the reset
    assert not cut["ok"] and cut["first_problem"]["problem"] == "cut"
    s.close()
    import sqlite3

    con = sqlite3.connect(str(tmp_path / "audit.db"))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit_log")
    con.close()
    for name in os.listdir(tmp_path):
        assert key.encode() not in (tmp_path / name).read_bytes()
