"""Shared fixtures. The suites run on SQLite files by default; with TMS_TEST_ENGINE=postgres the
same tests run on a PostgreSQL server (TMS_TEST_PG_URL, a fresh schema per test), and tests that
look inside SQLite files (marked sqlite_only) are deselected, as the run's summary says."""

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "examples"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "legacy")
BINDINGS = os.path.join(ROOT, "bindings", "python")


def python(code, *args, env=None, **kwargs):
    """Run Python code (dedented) in a fresh process with the binding importable; `args` are its
    sys.argv[1:]. stdout and stderr are pipes of text unless given."""
    full_env = dict(os.environ, PYTHONPATH=BINDINGS)
    full_env.update(env or {})
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=full_env,
                            text=True, **kwargs)


WAIT_UNTIL_LOCKED = """
import sqlite3, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    con = sqlite3.connect(sys.argv[1], timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        sys.exit(0)
    finally:
        con.close()
    time.sleep(0.005)
sys.exit("the write lock was never taken")
"""


def wait_until_locked(path):
    """Return once another connection holds `path`'s write lock, as seen from another process."""
    done = subprocess.run([sys.executable, "-c", WAIT_UNTIL_LOCKED, path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


HOLD_WRITE_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30)
con.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.readline()          # until the test says so
con.rollback()
print("released", flush=True)
"""


@contextlib.contextmanager
def write_lock_held(path):
    """Another process holds the SQLite file's write lock for the block (taken on entry, given
    back on exit; the process says so each time)."""
    holder = python(HOLD_WRITE_LOCK, path, stdin=subprocess.PIPE, stderr=None)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        try:
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
            holder.wait(timeout=30)
        finally:
            holder.kill()
            holder.wait()


# Prepended to a script run by several processes at once: `start_together()` waits until every
# process of the group has arrived (TMS_TEST_BARRIER=folder:count) and returns the time; `span`
# prints when it began and when it ended, for `assert_overlapped`.
START_TOGETHER = """
import os as _os, sys as _sys, time as _time
def start_together():
    folder, n = _os.environ["TMS_TEST_BARRIER"].rsplit(":", 1)
    open(_os.path.join(folder, f"ready-{_os.getpid()}"), "w").close()
    deadline = _time.monotonic() + 60
    while len(_os.listdir(folder)) < int(n):
        if _time.monotonic() > deadline:
            _sys.exit("the other processes of the group never started")
        _time.sleep(0.001)
    return _time.monotonic()
def span(start):
    print("SPAN", start, _time.monotonic(), flush=True)
"""


def together(tmp_path, count):
    """The environment for `count` processes that run START_TOGETHER's barrier."""
    folder = tmp_path / f"barrier-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return {"TMS_TEST_BARRIER": f"{folder}:{count}"}


def assert_overlapped(outputs, at_least=None):
    """The processes' SPAN lines show that (at least `at_least` of) them were at work at once:
    they began before the first of them ended. CLOCK_MONOTONIC is one clock for every process."""
    spans = [tuple(float(x) for x in line.split()[1:]) for out in outputs for line in out.splitlines()
             if line.startswith("SPAN ")]
    assert len(spans) == len(outputs), outputs
    first_end = min(end for _, end in spans)
    overlapping = sum(1 for start, _ in spans if start < first_end)
    assert overlapping >= (at_least or len(spans)), f"the processes ran one after another: {sorted(spans)}"


# A writer to kill -9 at random moments: the store is sys.argv[1:-1] (two files, or a PostgreSQL
# URL), the customer IDs' tag sys.argv[-1]. It prints "J job_id" and "A audit_id" for each write
# only once the write returned, so each printed line is one the store acknowledged.
CRASH_WRITER = """
import sys, tms
store = tms.Store(*sys.argv[1:-1])
i = 0
while True:
    cids = [f"{sys.argv[-1]}-{i}-{k}" for k in range(5)]
    job = store.create_job("crash", 4, "PE-Finalize", cids)
    print("J", job["job_id"], flush=True)
    aid = store.record_audit("crash", "PE-Finalize", cids, status="success")
    print("A", aid, flush=True)
    i += 1
"""


# A worker process of four threads, each creating `per_thread` jobs and an audit row for each:
# the store is sys.argv[1:-2] (two files, or a PostgreSQL URL), the users' and customer IDs' tag
# sys.argv[-2], per_thread sys.argv[-1]. Run with `together()`'s environment it starts with its
# group (START_TOGETHER); either way it prints its SPAN, then its errors, and fails if it had any.
WORKER = START_TOGETHER + """
import os, sys, threading, time, tms
name, per_thread = sys.argv[-2], int(sys.argv[-1])
store = tms.Store(*sys.argv[1:-2])
start = start_together() if "TMS_TEST_BARRIER" in os.environ else time.monotonic()
errors = []
def work(t):
    try:
        for i in range(per_thread):
            job = store.create_job(f"{name}-{t}", 2, "PE-Enable", [f"{name}-{t}-{i}-a", f"{name}-{t}-{i}-b"])
            store.record_audit(f"{name}-{t}", "PE-Enable", [job["job_id"]])
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
span(start)
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


# A Set Action on the stub cluster's /slow, which answers when the cluster says so: the store is
# sys.argv[1:-1] (two files, or a PostgreSQL URL), the cluster's base URL sys.argv[-1]. Its job
# stays IN_PROGRESS meanwhile; it prints the answer as one line of JSON.
SLOW_SET_ACTION = """
import json, sys, tms
cluster = sys.argv[-1]
s = tms.Store(*sys.argv[1:-1], allowed_clusters=[cluster], request_timeout_s=30, interrupted_after_s=600)
print(json.dumps(s.set_action({"url": cluster + "/slow", "token": "token-0123456789", "isPost": True,
                               "postData": {"action": "PE-Enable", "cids": ["c1"]}}, "alice")), flush=True)
"""


def store_settings(metrics_text):
    """The durability settings a store's metrics report, {setting: value}."""
    found = {}
    for line in metrics_text.splitlines():
        if line.startswith("tms_store_setting{"):
            labels = dict(part.split("=", 1) for part in line[len("tms_store_setting{"):line.index("}")].split(","))
            found[labels["setting"].strip('"')] = labels["value"].strip('"')
    return found


def durability_default(loc):
    """The durability settings a store on `loc` must have by default."""
    if loc.is_postgres:
        return {"synchronous_commit": "on"}
    return {"jobs.synchronous": "FULL", "jobs.journal_mode": "wal",
            "audit.synchronous": "FULL", "audit.journal_mode": "wal"}


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy a read-only legacy fixture into the test's directory and return its path."""

    def copy(name, as_name=None):
        to = tmp_path / (as_name or name)
        shutil.copy(os.path.join(FIXTURES, name), to)
        os.chmod(to, stat.S_IRUSR | stat.S_IWUSR)
        return str(to)

    return copy


ENGINE = os.environ.get("TMS_TEST_ENGINE", "sqlite")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: looks inside SQLite files; not run on PostgreSQL")


def pytest_collection_modifyitems(config, items):
    if ENGINE == "postgres":
        keep = [i for i in items if i.get_closest_marker("sqlite_only") is None]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test fails: every suite here must run whole, on PostgreSQL too (a missing
    server, Flask or tool is an error, never a quiet skip)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, which this suite does not allow: {report.longrepr}"


def pg_url():
    url = os.environ.get("TMS_TEST_PG_URL")
    if not url:
        raise RuntimeError("TMS_TEST_PG_URL is not set: the PostgreSQL suite needs a server; run it through "
                           "scripts/with-postgres.sh (make test does), or point TMS_TEST_PG_URL at one")
    return url


def with_param(url, param):
    return url + ("&" if "?" in url else "?") + param


def pg_tool(name):
    bindir = os.environ.get("TMS_TEST_PG_BIN")
    return os.path.join(bindir, name) if bindir else name


def psql(url, sql):
    """Rows of a query, through psql: numbers as int, NULL as None."""
    out = subprocess.run([pg_tool("psql"), url, "-X", "-q", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, check=True)
    result = []
    for line in out.stdout.splitlines():
        cells = []
        for cell in line.split("\x1f"):
            if cell == "":
                cells.append(None)
            elif cell.lstrip("-").isdigit():
                cells.append(int(cell))
            else:
                cells.append(cell)
        result.append(tuple(cells))
    return result


class Location:
    """Where one test's store lives: SQLite files in a directory, or a schema of its own on the
    PostgreSQL server. `rows` runs SQL both engines read alike (counts, plain columns)."""

    def __init__(self, directory, engine=ENGINE):
        self.engine = engine
        if engine == "postgres":
            base = pg_url()
            self.schema = f"py_{uuid.uuid4().hex[:16]}"
            psql(base, f"CREATE SCHEMA {self.schema}")
            self.jobs = with_param(base, f"options=-csearch_path%3D{self.schema}")
            self.audit = None
        else:
            self.jobs = str(directory / "jobs.db")
            self.audit = str(directory / "audit.db")

    @property
    def is_postgres(self):
        return self.engine == "postgres"

    def open(self, **options):
        import tms

        return tms.Store(self.jobs, self.audit, **options)

    def rows(self, sql):
        if self.is_postgres:
            return psql(self.jobs, sql)
        return rows(self.audit if "audit_log" in sql else self.jobs, sql)

    def dump(self):
        """Every byte the store holds, to look for what must never be stored."""
        if self.is_postgres:
            return subprocess.run([pg_tool("pg_dump"), pg_url(), "--schema", self.schema, "--data-only"],
                                  capture_output=True, check=True).stdout
        folder = os.path.dirname(self.jobs)
        return b"".join(open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder)
                        if os.path.isfile(os.path.join(folder, n)))

    def drop(self):
        if self.is_postgres:
            psql(pg_url(), f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@pytest.fixture
def pg(tmp_path):
    """A PostgreSQL schema of the test's own, whichever engine the run tests, dropped after it."""
    loc = Location(tmp_path, engine="postgres")
    yield loc
    loc.drop()


@pytest.fixture
def loc(tmp_path):
    location = Location(tmp_path)
    yield location
    location.drop()


@pytest.fixture
def store(loc):
    s = loc.open()
    yield s
    s.close()


@pytest.fixture
def dropin_paths(loc, monkeypatch):
    """The drop-ins (tms.jobs, tms.audit_db) pointed at this test's store: two files, or a
    PostgreSQL URL in DB_PATH."""
    from tms import audit_db, jobs

    monkeypatch.setattr(jobs, "DB_PATH", loc.jobs)
    monkeypatch.setattr(audit_db, "AUDIT_DB_PATH", loc.audit or loc.jobs)
    return loc


@pytest.fixture
def cluster():
    """A stub cluster on loopback (bindings/python/examples/stub_cluster.py). Its /slow answers
    after 6 s, past the Set Action tests' request timeouts, or when `cluster.release()` says so."""
    from stub_cluster import StubCluster

    with StubCluster(slow_seconds=6.0) as c:
        yield c


# The Set Action suites' bearer token: never stored, which their fixtures check.
TOKEN = "sekrit-bearer-token-0123456789"


def set_action_request(cluster, path="/tms/v1/set/action", action="Trans-Begin", cids=("c1", "c2"), token=TOKEN,
                       **extra):
    """A /proxy_fetch request body for `path` on the stub cluster, JSON postData."""
    body = {"url": cluster.base + path, "token": token, "isPost": True,
            "contentType": "application/json", "postData": {"action": action, "cids": list(cids)}}
    body.update(extra)
    return body


def cluster_options(cluster, **options):
    """Store options for calling the stub cluster: `options` over the Set Action suites' usual ones."""
    opts = dict(allowed_clusters=[cluster.base], request_timeout_s=5, connect_timeout_s=2,
                max_response_bytes=16 * 1024, interrupted_after_s=60)
    opts.update(options)
    return opts


@pytest.fixture
def cluster_store(loc, cluster):
    """A store allowed to call the stub cluster."""
    s = loc.open(allowed_clusters=[cluster.base], request_timeout_s=5, connect_timeout_s=5)
    yield s
    s.close()


def undelivered(jobs_path, audit_path):
    """Outbox rows without a receipt in audit.db: audit rows still on their way to the audit log
    (a delivered row stays in the outbox, receipted, until a later write removes it)."""
    con = sqlite3.connect(jobs_path)
    try:
        con.execute("ATTACH DATABASE ? AS audit", (audit_path,))
        return con.execute("SELECT COUNT(*) FROM audit_outbox WHERE delivery_key NOT IN "
                           "(SELECT delivery_key FROM audit.audit_outbox_receipts)").fetchone()[0]
    finally:
        con.close()


def rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
