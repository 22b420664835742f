"""Hostile input through the Python layer and the C ABI beneath it: every Store method, every
string parameter, a table of nasty values. Each call either works (storing the value verbatim)
or raises its own TmsError subclass; nothing crashes and the files stay sound."""

import pytest

import tms
from conftest import Location, rows

BIG = "x" * (10 * 1024 * 1024)
NASTY = {
    "empty": "",
    "invalid utf-8": "bad\ud800utf8",
    "10 MB": BIG,
    "sql": "'; DROP TABLE jobs; --",
    "quotes": "\"double\" 'single' `tick` \\back %percent _under",
    "control": "a\x01b\x1f",
    "newline": "line1\nline2",
    "nul": "a\0b",
    "unicode": "naïve ✓ 日本 \U0001f600",
}

# Each Store method with its string parameters; the other arguments are valid.
CALLS = {
    "create_job": (lambda s, v, p: s.create_job(**{**dict(user_id="u", action_code=1, action_name="Trans-Begin", cids=["c1"]), p: ([v] if p == "cids" else v)}),
                   ["user_id", "action_name", "cids", "cluster_url", "batch_id", "response_summary", "status"]),
    "update_job": (lambda s, v, p: s.update_job(**{**dict(job_id=s.seed_job, status="SUCCESS"), p: v}),
                   ["job_id", "status", "error_message", "response_summary"]),
    "get_job": (lambda s, v, p: s.get_job(v), ["job_id"]),
    "get_user_jobs": (lambda s, v, p: s.get_user_jobs(v), ["user_id"]),
    "get_job_customers": (lambda s, v, p: s.get_job_customers(v), ["job_id"]),
    "record_audit": (lambda s, v, p: s.record_audit(**{**dict(user_id="u", action_type="Trans-Begin"), p: v}),
                     ["user_id", "action_type", "customer_ids", "ip_address", "status", "error_message"]),
    "audit_trail": (lambda s, v, p: s.audit_trail(**{p: v}), ["user_id", "action_type", "customer_id"]),
    "cache_get": (lambda s, v, p: s.cache_get(**{**dict(cid="c1"), p: v}), ["cid", "app_name"]),
    "cache_put": (lambda s, v, p: s.cache_put(**{**dict(cid="c1", status_data={"a": 1}), p: v}), ["cid", "app_name", "status_data"]),
    "cache_get_batch": (lambda s, v, p: s.cache_get_batch(**{**dict(cids=["c1"]), p: ([v] if p == "cids" else v)}), ["cids", "app_name"]),
    "cache_invalidate": (lambda s, v, p: s.cache_invalidate(**{p: v}), ["cid", "app_name"]),
    "set_action": (lambda s, v, p: s.set_action(**{**dict(request={"url": "http://127.0.0.1:9/x"}, user_id="u"), p: v}),
                   ["request", "user_id", "client_ip", "idempotency_key"]),
    "map_action": (lambda s, v, p: tms.map_action(v), ["name"]),
    "parse_customer_ids": (lambda s, v, p: tms.parse_customer_ids(v), ["text"]),
}


def _latest_audit(s):
    return s.audit_trail(limit=1)[0]


def _created(s, job, v, p):
    if p == "cids":
        return s.get_job_customers(job["job_id"]), [v.strip()] if v.strip() else []  # trimmed; blanks dropped
    return s.get_job(job["job_id"])[p], v


def _updated(s, result, v, p):
    if p == "job_id":
        return None  # a lookup key, nothing stored
    return s.get_job(s.seed_job)[p], v


def _audited(s, result, v, p):
    return _latest_audit(s)[p], v


def _set_action(s, result, v, p):
    # The URL is not allowed (403): the refusal's audit row holds the caller's values. A value
    # refused as invalid (400) is stored nowhere.
    column = {"user_id": "user_id", "client_ip": "ip_address"}.get(p)
    return (_latest_audit(s)[column], v) if column and result[0] == 403 else None


def _cached(s, result, v, p):
    if p == "status_data":
        # A lone surrogate reaches the library as JSON's escape \ud800, which no UTF-8 JSON
        # parser takes back: that entry is kept, and read back, as the JSON text sent.
        import json
        return s.cache_get("c1"), json.dumps(v) if v == NASTY["invalid utf-8"] else v
    return s.cache_get(**{**dict(cid="c1"), p: v}), {"a": 1}


# How each writing call's stored value is read back: (stored, expected), or None when nothing is
# stored. The other calls only read.
READ_BACK = {
    "create_job": _created,
    "update_job": _updated,
    "record_audit": _audited,
    "cache_put": _cached,
    "set_action": _set_action,
}


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    loc = Location(tmp_path_factory.mktemp("hostile"))
    s = loc.open()
    s.seed_job = s.create_job("u", 1, "Trans-Begin", ["c1"])["job_id"]
    yield s
    assert s.verify_audit()["ok"]
    s.close()
    if not loc.is_postgres:
        assert loc.rows("PRAGMA integrity_check") == [("ok",)]
        assert rows(loc.audit, "PRAGMA integrity_check") == [("ok",)]
    loc.drop()


@pytest.mark.parametrize("value_name", list(NASTY))
@pytest.mark.parametrize("method", list(CALLS))
def test_every_method_and_string_parameter(hostile_store, method, value_name):
    call, params = CALLS[method]
    value = NASTY[value_name]
    stored = 0
    for param in params:
        try:
            result = call(hostile_store, value, param)
        except tms.TmsError as e:
            assert e.status > 0 and str(e), (method, param)
            if value_name == "invalid utf-8":
                assert isinstance(e, (tms.InvalidUtf8Error, tms.InvalidInputError)), (method, param, e)
            if value_name == "nul":
                assert isinstance(e, tms.InvalidInputError), (method, param, e)
        else:
            # status_data is any JSON-able value: it reaches the library as JSON text, escaped.
            if param != "status_data":
                assert value_name not in ("invalid utf-8", "nul"), f"{method}({param}) accepted {value_name}"
            # Accepted means stored verbatim: read it back.
            check = READ_BACK.get(method, lambda *_: None)(hostile_store, result, value, param)
            if check is not None:
                got, want = check
                assert got == want, (method, param, value_name, got[:200] if isinstance(got, str) else got)
                stored += 1
    # Values every writing call accepts somewhere (set_action refuses user values over 256 bytes).
    must_store = {"sql", "quotes", "unicode"} | ({"10 MB"} if method != "set_action" else set())
    if method in READ_BACK and value_name in must_store:
        assert stored > 0, f"{method} stored no {value_name} value to read back"


def test_sql_metacharacters_are_stored_verbatim(store):
    user = "o'brien\"; DROP TABLE jobs; --"
    cids = ["'; DELETE FROM job_customers; --", "c%_\\", "c1"]
    job = store.create_job(user, 1, "Trans-Begin", cids, batch_id="b' OR '1'='1")
    assert store.get_job_customers(job["job_id"]) == sorted(cids)
    assert store.get_job(job["job_id"])["batch_id"] == "b' OR '1'='1"
    assert store.get_user_jobs(user)[0]["job_id"] == job["job_id"]
    store.record_audit(user, "Trans-Begin", cids)
    store.record_audit(user, "Trans-Begin", ["c1x"])
    # LIKE wildcards and quotes in a filter match only themselves, as whole IDs.
    assert len(store.audit_trail(customer_id="c%_\\")) == 1
    assert len(store.audit_trail(customer_id="c%")) == 0
    assert len(store.audit_trail(customer_id="c1")) == 1


def test_free_text_keeps_control_characters_and_large_values(store):
    job = store.create_job("u", 1, "Trans-Begin", ["c1"])
    store.update_job(job["job_id"], "FAILED", error_message="multi\nline\ttext", response_summary=BIG)
    assert store.get_job(job["job_id"])["response_summary"] == BIG
    with pytest.raises(tms.TooLargeError):
        store.update_job(job["job_id"], "FAILED", response_summary="y" * (17 * 1024 * 1024))
    with pytest.raises(tms.InvalidInputError):
        store.create_job("u\x07", 1, "Trans-Begin", ["c1"])


def _outcome(store, cids):
    try:
        job = store.create_job("u", 1, "Trans-Begin", cids)
    except tms.TmsError as e:
        return type(e)
    return store.get_job_customers(job["job_id"])


@pytest.mark.parametrize("value_name", [n for n in NASTY if n != "10 MB"])
def test_a_long_id_list_treats_each_value_as_a_short_one_does(store, value_name):
    """Lists past a few dozen IDs go to C packed in one buffer: a nasty value among 40 IDs must
    meet the same fate (refused with the same error, or stored as the same text) as alone."""
    value = NASTY[value_name]
    alone = _outcome(store, [value])
    among = _outcome(store, [f"{value_name}-{i}" for i in range(20)] + [value] + [f"{value_name}+{i}" for i in range(20)])
    if isinstance(alone, type):
        assert among is alone, value_name
    else:
        assert sorted(set(among) - {f"{value_name}-{i}" for i in range(20)} - {f"{value_name}+{i}" for i in range(20)}) == alone


def test_a_long_list_of_ints_and_repeats_is_stored_like_a_short_one(store):
    job = store.create_job("u", 1, "Trans-Begin", list(range(30)) + ["0", "29"])
    assert job["customer_count"] == 30
    assert store.get_job_customers(job["job_id"]) == sorted(str(i) for i in range(30))


def test_a_million_customer_ids_is_refused_quickly(store, loc):
    ids = [f"{i:024d}" for i in range(1_000_000)]
    with pytest.raises(tms.TooLargeError, match="at most 100000"):
        store.create_job("u", 1, "Trans-Begin", ids)
    with pytest.raises(tms.TooLargeError):
        tms.parse_customer_ids("\n".join(ids))
    assert loc.rows("SELECT COUNT(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize("limit", [-1, -(2**63), 100_001, 2**63 - 1, 2**64, "ten", None])
def test_negative_and_huge_limits(store, limit):
    with pytest.raises(tms.InvalidInputError):
        store.get_user_jobs("u", limit)
    with pytest.raises(tms.InvalidInputError):
        store.audit_trail(limit=limit)


@pytest.mark.parametrize("code", [-1, 0, 7, 2**31, -(2**31) - 1, 2**64])
def test_bad_action_codes(store, code):
    with pytest.raises(tms.InvalidInputError):
        store.create_job("u", code, "Trans-Begin", ["c1"])
