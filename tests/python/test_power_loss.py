"""Power loss: what an acknowledged write is worth when the power goes out.

`kill -9` keeps the OS page cache; a power cut does not. Each round here runs one writer process
under the crashvfs shim (tests/power_loss/crashvfs.c, LD_PRELOAD over the system SQLite that
libtms, the `tms` tool and Python's sqlite3 all load), which logs the pre-image of every write
SQLite has not synced yet. The writer dies at a random write or sync of its own (the shim's
CRASHVFS_CRASH_AT; past the end of the workload, the round is a cut after the last call), then
tests/power_loss/powerloss.py cuts the power: mode `all` undoes every unsynced write, file
creation and deletion; mode `torn` keeps a random prefix of them and tears the last one kept
sector by sector. What the writer acknowledged (printed after the call returned) is then looked
for in the files.

What is modelled and what is not: see tests/power_loss/README.md.

Rounds: TMS_STRESS=1 runs five times as many; TMS_POWERLOSS_SEED replays a run (the seed is
printed with the figures at the end).
"""

import collections
import itertools
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

import tms
from conftest import FIXTURES, ROOT
from conftest import rows as raw_rows

sys.path.insert(0, os.path.join(ROOT, "tests", "power_loss"))
import powerloss  # noqa: E402

pytestmark = pytest.mark.sqlite_only

STRESS = 5 if os.environ.get("TMS_STRESS") == "1" else 1
SEED = int(os.environ.get("TMS_POWERLOSS_SEED") or time.time_ns() % 10**9)
WRITER = os.path.join(ROOT, "tests", "power_loss", "writer.py")
TMS = os.path.join(ROOT, "target", "release", "tms")

#: Every test adds its figures here; printed once at the end of the module.
FIGURES = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def shim(request):
    so = powerloss.build_shim()

    def report():
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if not tr or not FIGURES:
            return
        with capture.global_and_fixture_disabled():
            write_figures(tr)

    def write_figures(tr):
        tr.write_line("")
        tr.write_line(f"power loss (seed {SEED}, TMS_POWERLOSS_SEED={SEED} replays it):")
        total = collections.Counter()
        for name, f in sorted(FIGURES.items()):
            tr.write_line(f"  {name:20} " + ", ".join(f"{k} {v}" for k, v in sorted(f.items())))
            if name.startswith("sqlite3"):
                continue  # Python's sqlite3: the harness's own check, not libtms
            level = "NORMAL" if " NORMAL" in name else "FULL"
            total["cuts"] += f["cuts"]
            total["torn rounds"] += f["torn_rounds"]
            total[f"acknowledged at {level}"] += f["acked"]
            total[f"lost at {level}"] += f["lost"] + f["lost_outcomes"] + f["broken_promises"]
            total["outcomes without audit row at " + level] += f["outcomes_without_audit_row"]
        tr.write_line("  libtms total: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
        out = os.path.join(ROOT, "target", "power_loss", "figures.json")
        with open(out, "w") as fh:
            json.dump({"seed": SEED, "figures": FIGURES, "total": total}, fh, indent=1)

    request.addfinalizer(report)
    return so


@pytest.fixture(scope="module")
def stub():
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python", "examples"))
    from stub_cluster import StubCluster

    with StubCluster() as c:
        c.server.handle_error = lambda *args: None  # a writer killed mid-request resets its connection
        yield c


def rng_for(name):
    return random.Random(f"{SEED}-{name}")


def integrity(path):
    """PRAGMA integrity_check of one file, as a reboot's first reader sees it."""
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def tms_verify(jobs, audit):
    """`tms verify-audit` on the files, as an operator would check a restored copy."""
    out = subprocess.run([TMS, "--jobs-db", jobs, "--audit-db", audit, "verify-audit"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["ok"], (out.returncode, out.stdout, out.stderr)


def reopen_and_verify(jobs, audit, **options):
    """Open the store as the app would after the reboot (migrates, delivers the outbox) and
    verify the chain; returns the open store."""
    store = tms.Store(jobs, audit, **options)
    store.recover_interrupted()  # delivers what waits in the outbox; young jobs are left alone
    check = store.verify_audit()
    assert check["ok"], check
    return store


class Rounds:
    """Calibrate a workload (how many writes and syncs a full run makes), then run rounds that
    die at a random one of them and cut the power."""

    def __init__(self, shim, tmp_path, name, after_end=0.15):
        self.shim, self.tmp, self.name = shim, tmp_path, name
        # The share of rounds whose writer finishes before the cut (an acknowledged copy or
        # backup is only acknowledged at its end).
        self.after_end = after_end
        self.rng = rng_for(name)
        self.length = None
        self.figures = FIGURES[name]
        self.k = 0

    def new_dir(self):
        self.k += 1
        d = self.tmp / f"r{self.k}"
        d.mkdir()
        return d

    def calibrate(self, argv_for, prepare):
        d = self.new_dir()
        prepare(d)
        run = powerloss.run_writer(argv_for(d), self.shim, str(d / "device"))
        assert run.returncode == 0, run.stderr
        self.length = powerloss.ops_in_log(str(d / "device"))
        assert self.length > 0

    def one(self, argv_for, prepare, mode=None):
        d = self.new_dir()
        prepare(d)
        crash_at = None if self.rng.random() < self.after_end else self.rng.randint(1, self.length)
        argv = argv_for(d)
        if crash_at is None and argv[1] == WRITER:
            argv.append("--die-at-end")  # the power goes after the last call, the app still running
        run = powerloss.run_writer(argv, self.shim, str(d / "device"), crash_at=crash_at)
        assert run.killed or run.returncode == 0, (run.returncode, run.stderr[-2000:])
        mode = mode or self.rng.choice(["all", "torn", "files"])
        cut = powerloss.cut(str(d / "device"), mode, self.rng)
        self.figures["cuts"] += 1
        self.figures[f"cuts_{mode}"] += 1
        self.figures["acked"] += len(run.acks)
        self.figures["unsynced_reverted"] += cut["reverted"]
        if cut["torn_sectors"]:
            self.figures["torn_rounds"] += 1
        return d, run, cut


def checked_files(d):
    """jobs.db and audit.db in `d` after a cut: each that exists passes integrity_check, and
    reopening the store (which delivers what waits) finds a chain that verifies."""
    jobs, audit = str(d / "jobs.db"), str(d / "audit.db")
    for f in (jobs, audit):
        if os.path.exists(f):
            assert integrity(f) == "ok", f
    reopen_and_verify(jobs, audit).close()
    return jobs, audit


def assert_suffix(survived, what):
    """Only the last commits may be lost: once an acknowledged write is missing, so is every
    later one (one writer, one file)."""
    if False in survived:
        first = survived.index(False)
        assert not any(survived[first:]), f"{what}: write {first} lost but a later one survived: {survived}"


def python_writer(workload, *args):
    return [sys.executable, WRITER, workload, *map(str, args)]


def store_args(d, sync, n, tag):
    return ["--jobs", d / "jobs.db", "--audit", d / "audit.db", "--sync", sync, "--n", n, "--tag", tag]


# --- The harness itself ----------------------------------------------------------------------

def test_cut_all_restores_the_last_synced_state(shim, tmp_path):
    """A database closed cleanly (no -wal), then written at synchronous=OFF (nothing synced) by a
    writer that dies with its connection open: the cut gives back the file byte for byte, and the
    -wal the writer created is gone again (its creation was never synced either)."""
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT NOT NULL, pad TEXT)")
    con.execute("INSERT INTO t(tag) VALUES ('before')")
    con.commit()
    con.close()
    before = db.read_bytes()
    run = powerloss.run_writer(python_writer("sqlite3", "--db", db, "--sync", "OFF", "--n", 1500, "--die-at-end"),
                               shim, str(tmp_path / "device"))
    assert run.killed and len(run.acks) == 1500
    assert os.path.exists(str(db) + "-wal") and db.read_bytes() != before  # checkpoints wrote to it
    cut = powerloss.cut(str(tmp_path / "device"), "all")
    assert cut["syncs"] == 0 and cut["reverted"] > 0, cut
    assert db.read_bytes() == before
    assert not os.path.exists(str(db) + "-wal")
    assert raw_rows(str(db), "SELECT tag FROM t") == [("before",)]


# --- Show it bites: Python's sqlite3 ----------------------------------------------------------

@pytest.mark.parametrize("sync", ["OFF", "FULL"])
def test_python_sqlite3(shim, tmp_path, sync):
    """The harness bites: at synchronous=OFF Python's sqlite3 loses acknowledged rows under a cut;
    at FULL it loses none."""
    rounds = Rounds(shim, tmp_path, f"sqlite3 {sync}")

    def argv(d):
        return python_writer("sqlite3", "--db", d / "t.db", "--sync", sync, "--n", 60, "--tag", "t")

    rounds.calibrate(argv, lambda d: None)
    lost = 0
    for i in range(10 * STRESS):
        d, run, _ = rounds.one(argv, lambda d: None, mode=["all", "torn", "files"][i % 3])
        db = str(d / "t.db")
        if not os.path.exists(db):
            ids = set()
        else:
            assert integrity(db) == "ok"
            try:
                ids = {r[0] for r in raw_rows(db, "SELECT id FROM t")}
            except sqlite3.OperationalError:  # the table's creation was lost too
                ids = set()
        lost += sum(1 for a in run.acks if a["id"] not in ids)
    rounds.figures["lost"] += lost
    if sync == "OFF":
        assert lost > 0, "the cut lost nothing at synchronous=OFF: the harness does not bite"
    else:
        assert lost == 0, f"{lost} acknowledged rows lost at synchronous=FULL"


# --- libtms's write paths ---------------------------------------------------------------------

def check_jobs(jobs, acks):
    """Acknowledged jobs lost; asserts every job present has all its customers."""
    present = {}
    for job_id, n in raw_rows(jobs, "SELECT job_id, customer_count FROM jobs"):
        present[job_id] = n
    customers = collections.defaultdict(set)
    for job_id, cid in raw_rows(jobs, "SELECT job_id, cid FROM job_customers"):
        customers[job_id].add(cid)
    for job_id, n in present.items():
        assert len(customers[job_id]) == n, (job_id, n, customers[job_id])
    lost = 0
    survived = []
    for a in acks:
        survived.append(a["job"] in present)
        if a["job"] not in present:
            lost += 1
        else:
            assert customers[a["job"]] == set(a["cids"])
    assert_suffix(survived, "create_job")
    return lost


def single_writer_rounds(rounds, sync, argv, prepare, full_rounds, normal_rounds, lost_in):
    """The rounds of one store-using writer: cut, check both files and the chain, count what
    `lost_in(d, jobs, audit, run)` finds lost; at FULL nothing may be."""
    rounds.calibrate(argv, prepare)
    lost = 0
    for _ in range((full_rounds if sync == "FULL" else normal_rounds) * STRESS):
        d, run, _ = rounds.one(argv, prepare)
        jobs, audit = checked_files(d)
        lost += lost_in(d, jobs, audit, run)
    rounds.figures["lost"] += lost
    if sync == "FULL":
        assert lost == 0


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_create_job(shim, tmp_path, sync):
    def argv(d):
        return python_writer("create_job", *store_args(d, sync, 15, "cj"))

    single_writer_rounds(Rounds(shim, tmp_path, f"create_job {sync}"), sync, argv, lambda d: None, 40, 12,
                         lambda d, jobs, audit, run: check_jobs(jobs, run.acks))


def prepared_jobs(d, count=6):
    store = tms.Store(str(d / "jobs.db"), str(d / "audit.db"))
    ids = [store.create_job("alice", 1, "Trans-Begin", [f"p{i}"])["job_id"] for i in range(count)]
    store.close()
    json.dump(ids, open(d / "jobs.json", "w"))
    return ids


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_update_job(shim, tmp_path, sync):
    def argv(d):
        return python_writer("update_job", *store_args(d, sync, 18, "uj"), "--jobs-list", d / "jobs.json")

    def lost_in(d, jobs, audit, run):
        last = {}
        for a in run.acks:
            last[a["job"]] = a["seq"]
        now = dict(raw_rows(jobs, "SELECT job_id, error_message FROM jobs"))
        return sum(1 for job, seq in last.items() if now[job] is None or int(now[job][1:]) < seq)

    single_writer_rounds(Rounds(shim, tmp_path, f"update_job {sync}"), sync, argv, prepared_jobs, 30, 10, lost_in)


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_record_audit(shim, tmp_path, sync):
    def argv(d):
        return python_writer("record_audit", *store_args(d, sync, 15, "ra"))

    def lost_in(d, jobs, audit, run):
        rows = dict(raw_rows(audit, "SELECT id, customer_ids FROM audit_log"))
        assert_suffix([a["audit"] in rows for a in run.acks], "record_audit")
        lost = 0
        for a in run.acks:
            if a["audit"] not in rows:
                lost += 1
            else:
                assert json.loads(rows[a["audit"]]) == [a["cid"]]
        return lost

    single_writer_rounds(Rounds(shim, tmp_path, f"record_audit {sync}"), sync, argv, lambda d: None, 40, 12, lost_in)


def audited_cids(audit):
    """The customer IDs of the audit rows; asserts none is audited twice (each Set Action has
    customer IDs of its own, and its audit row is written exactly once)."""
    out = collections.Counter()
    for (ids,) in raw_rows(audit, "SELECT customer_ids FROM audit_log WHERE customer_ids LIKE '[%'"):
        out.update(json.loads(ids))
    twice = sorted(c for c, n in out.items() if n > 1)
    assert not twice, f"audit rows written twice for {twice}"
    return set(out)


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_set_action(shim, tmp_path, stub, sync):
    """Set Actions (job, outcome, outbox delivery) against a real HTTP stub on loopback: at FULL
    every answered Set Action keeps its outcome and its audit row; at either setting no outcome
    that survived is without its audit row once the store is reopened."""
    rounds = Rounds(shim, tmp_path, f"set_action {sync}")

    def argv(d):
        threads = 2 if rounds.k % 2 == 0 else 1
        return python_writer("set_action", *store_args(d, sync, 10, f"sa{rounds.k}"), "--cluster", stub.base,
                             "--threads", threads)

    rounds.calibrate(argv, lambda d: None)
    lost_outcomes = lost_audit = orphans = warned = 0
    orphan_rounds = 0
    for i in range((45 if sync == "FULL" else 24) * STRESS):
        # Half the rounds cut each file on its own: one file's commit durable, the other's not.
        d, run, _ = rounds.one(argv, lambda d: None, mode=["all", "files", "torn", "files"][i % 4])
        jobs, audit = checked_files(d)
        status = dict(raw_rows(jobs, "SELECT job_id, status FROM jobs"))
        cid_of = dict(raw_rows(jobs, "SELECT job_id, cid FROM job_customers"))
        audited = audited_cids(audit)
        for a in run.acks:
            warned += a.get("warning") is not None
            if a.get("job") is None:
                continue
            if status.get(a["job"]) in (None, "IN_PROGRESS"):
                lost_outcomes += 1
            if a["cid"] not in audited:
                lost_audit += 1
        # Every outcome that survived, acknowledged or not, has its audit row.
        missing = [j for j, s in status.items() if s != "IN_PROGRESS" and cid_of.get(j) not in audited]
        orphans += len(missing)
        orphan_rounds += bool(missing)
    rounds.figures.update({"lost_outcomes": lost_outcomes, "lost_audit_rows": lost_audit,
                           "outcomes_without_audit_row": orphans, "rounds_with_such_outcomes": orphan_rounds,
                           "answers_with_warning": warned})
    if sync == "FULL":
        assert (lost_outcomes, lost_audit) == (0, 0)
    assert orphans == 0, (f"{orphans} Set Action outcomes survived without their audit row "
                          f"in {orphan_rounds} of {rounds.figures['cuts']} cuts at {sync}")


# --- The schema upgrade of a legacy file ------------------------------------------------------

def legacy_counts(jobs, audit):
    return (raw_rows(jobs, "SELECT job_id FROM jobs ORDER BY job_id"),
            raw_rows(jobs, "SELECT id, job_id, cid FROM job_customers ORDER BY id"),
            raw_rows(audit, "SELECT id, user_id, action_type FROM audit_log ORDER BY id"))


@pytest.mark.parametrize("sync", ["FULL"])
def test_upgrade_legacy(shim, tmp_path, sync):
    """The v0 -> current migration of a legacy store in place, cut anywhere: the files are either
    still the legacy ones or the migrated ones, with every legacy row."""
    rounds = Rounds(shim, tmp_path, f"upgrade v0 {sync}")
    fixtures = ["jobs.db", "jobs_v0_user_fk.db"]
    legacy = {}
    for name in fixtures:
        d = tmp_path / f"legacy-{name}"
        d.mkdir()
        shutil.copy(os.path.join(FIXTURES, name), d / "jobs.db")
        shutil.copy(os.path.join(FIXTURES, "audit.db"), d / "audit.db")
        legacy[name] = legacy_counts(str(d / "jobs.db"), str(d / "audit.db"))

    def prepare(d):
        name = fixtures[rounds.k % 2]
        shutil.copy(os.path.join(FIXTURES, name), d / "jobs.db")
        shutil.copy(os.path.join(FIXTURES, "audit.db"), d / "audit.db")
        os.chmod(d / "jobs.db", 0o600)
        os.chmod(d / "audit.db", 0o600)
        (d / "fixture").write_text(name)

    def argv(d):
        return python_writer("upgrade", *store_args(d, sync, 4, "up"))

    rounds.calibrate(argv, prepare)
    lost = 0
    versions = collections.Counter()
    for _ in range(30 * STRESS):
        d, run, _ = rounds.one(argv, prepare)
        jobs, audit = str(d / "jobs.db"), str(d / "audit.db")
        assert integrity(jobs) == "ok" and integrity(audit) == "ok"
        v = (raw_rows(jobs, "PRAGMA user_version")[0][0], raw_rows(audit, "PRAGMA user_version")[0][0])
        versions[v] += 1
        if any(a.get("opened") for a in run.acks):
            assert v[0] > 0 and v[1] > 0, v
        before = legacy[(d / "fixture").read_text()]
        now = legacy_counts(jobs, audit)
        assert set(before[0]) <= set(now[0]) and set(before[1]) <= set(now[1]) and set(before[2]) <= set(now[2])
        reopen_and_verify(jobs, audit).close()
        lost += check_jobs(jobs, [a for a in run.acks if "job" in a])
    rounds.figures["lost"] += lost
    rounds.figures["left_at_v0"] += sum(n for v, n in versions.items() if v[0] == 0)
    assert lost == 0


# --- copy_into, tms copy, tms backup ----------------------------------------------------------

@pytest.fixture(scope="module")
def source_store(tmp_path_factory):
    """A store to copy from: jobs with customers, cache entries and a chained audit log."""
    d = tmp_path_factory.mktemp("source")
    store = tms.Store(str(d / "jobs.db"), str(d / "audit.db"))
    for i in range(120):
        store.create_job("alice", 1, "Trans-Begin", [f"s{i}-{k}" for k in range(4)])
        store.record_audit("alice", "power_loss_source", [f"s{i}"])
    for i in range(20):
        store.cache_put(f"s{i}", {"status": "READY"})
    store.close()
    return d


def store_counts(jobs, audit):
    if not (os.path.exists(jobs) and os.path.exists(audit)):
        return None
    try:
        return _store_counts(jobs, audit)
    except sqlite3.OperationalError as e:  # e.g. no such table: the file is empty
        return str(e)


def _store_counts(jobs, audit):
    return (raw_rows(jobs, "SELECT COUNT(*) FROM jobs")[0][0], raw_rows(jobs, "SELECT COUNT(*) FROM job_customers")[0][0],
            raw_rows(jobs, "SELECT COUNT(*) FROM appstatus_cache")[0][0],
            raw_rows(audit, "SELECT COUNT(*), MAX(chain_seq) FROM audit_log")[0])


def copy_source(src, d):
    for name in ("jobs.db", "audit.db"):
        shutil.copy(src / name, d / f"src-{name}")


@pytest.mark.parametrize("how", ["copy_into", "tms copy"])
def test_copy(shim, tmp_path, source_store, how):
    rounds = Rounds(shim, tmp_path, how, after_end=0.4)
    expected = store_counts(str(source_store / "jobs.db"), str(source_store / "audit.db"))

    def argv(d):
        if how == "copy_into":
            return python_writer("copy_into", "--src-jobs", d / "src-jobs.db", "--src-audit", d / "src-audit.db",
                                 "--jobs", d / "jobs.db", "--audit", d / "audit.db")
        return [TMS, "--jobs-db", d / "src-jobs.db", "--audit-db", d / "src-audit.db", "copy",
                "--to", d / "jobs.db", "--to-audit-db", d / "audit.db"]

    def prepare(d):
        copy_source(source_store, d)

    rounds.calibrate(argv, prepare)
    lost = 0
    for _ in range((30 if how == "copy_into" else 15) * STRESS):
        d, run, _ = rounds.one(argv, prepare)
        jobs, audit = str(d / "jobs.db"), str(d / "audit.db")
        for f in (jobs, audit):
            if os.path.exists(f):
                assert integrity(f) == "ok", f
        if os.path.exists(jobs) and os.path.exists(audit):
            reopen_and_verify(jobs, audit).close()
            tms_verify(jobs, audit)
        if run.acks:
            lost += store_counts(jobs, audit) != expected
        # Safe to run again after the interruption: the copy completes.
        src = tms.Store(str(d / "src-jobs.db"), str(d / "src-audit.db"))
        dst = tms.Store(jobs, audit)
        result = src.copy_into(dst)
        assert result["verification"]["ok"] if "verification" in result else True, result
        src.close()
        dst.close()
        assert store_counts(jobs, audit) == expected
    rounds.figures["lost"] += lost
    assert lost == 0


def test_tms_backup(shim, tmp_path, source_store):
    rounds = Rounds(shim, tmp_path, "tms backup", after_end=0.4)
    expected = store_counts(str(source_store / "jobs.db"), str(source_store / "audit.db"))

    def argv(d):
        return [TMS, "--jobs-db", d / "src-jobs.db", "--audit-db", d / "src-audit.db", "backup", d / "backup"]

    def prepare(d):
        copy_source(source_store, d)

    rounds.calibrate(argv, prepare)
    lost = 0
    for _ in range(25 * STRESS):
        d, run, _ = rounds.one(argv, prepare)
        jobs, audit = str(d / "backup" / "jobs.db"), str(d / "backup" / "audit.db")
        if run.returncode == 0:
            ok = os.path.exists(jobs) and os.path.exists(audit)
            ok = ok and integrity(jobs) == "ok" and integrity(audit) == "ok"
            got = store_counts(jobs, audit)
            if ok and got == expected:
                reopen_and_verify(jobs, audit).close()
                tms_verify(jobs, audit)
            else:
                lost += 1
                print(f"acknowledged backup lost in {d}: {got} instead of {expected}")
        # The source was only read: it is intact.
        assert integrity(str(d / "src-jobs.db")) == "ok" and integrity(str(d / "src-audit.db")) == "ok"
    rounds.figures["lost"] += lost
    assert lost == 0, f"{lost} acknowledged backups did not survive the cut"


def test_several_processes_killed_at_random(shim, tmp_path, stub):
    """Three writer processes on one store (create_job, record_audit, Set Actions), all killed
    with SIGKILL at a random moment, then the cut: the shim's log keeps their writes in the order
    they reached the files (flock), so the cut is consistent across processes."""
    figures = FIGURES["3 processes FULL"]
    rng = rng_for("several")
    lost = 0
    for k in range(8 * STRESS):
        d = tmp_path / f"r{k}"
        d.mkdir()
        tms.Store(str(d / "jobs.db"), str(d / "audit.db")).close()  # the files exist before the cut
        device = str(d / "device")
        os.makedirs(device)
        env = powerloss.shim_env(shim, device)
        argvs = [python_writer("create_job", *store_args(d, "FULL", 400, f"m{k}")),
                 python_writer("record_audit", *store_args(d, "FULL", 400, f"m{k}")),
                 python_writer("set_action", *store_args(d, "FULL", 200, f"m{k}"), "--cluster", stub.base)]
        procs = [subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
                 for argv in argvs]
        time.sleep(rng.uniform(0.3, 1.5))
        for p in procs:
            p.kill()
        outs = [p.communicate()[0] for p in procs]
        acks = []
        for out in outs:
            for line in out.decode().splitlines():
                try:
                    acks.append(json.loads(line))
                except ValueError:
                    pass
        mode = ["all", "torn", "files"][k % 3]
        cut = powerloss.cut(device, mode, rng)
        figures["cuts"] += 1
        figures["acked"] += len(acks)
        figures["torn_rounds"] += bool(cut["torn_sectors"])
        jobs, audit = str(d / "jobs.db"), str(d / "audit.db")
        assert integrity(jobs) == "ok" and integrity(audit) == "ok"
        reopen_and_verify(jobs, audit).close()
        lost += check_jobs(jobs, [a for a in acks if "cids" in a])
        rows = {r[0] for r in raw_rows(audit, "SELECT id FROM audit_log")}
        lost += sum(1 for a in acks if "audit" in a and a["audit"] not in rows)
        status = dict(raw_rows(jobs, "SELECT job_id, status FROM jobs"))
        audited = audited_cids(audit)
        lost += sum(1 for a in acks if "answer_status" in a and a.get("job")
                    and (status.get(a["job"]) in (None, "IN_PROGRESS") or a["cid"] not in audited))
    figures["lost"] += lost
    assert lost == 0


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_set_action_outbox_clearing_never_outlives_the_audit_row(shim, tmp_path, stub, sync):
    """The deterministic case: 70 Set Actions answered (more than two of NORMAL's batches of 32, so
    removals really happen), the app still running, then the power goes
    and jobs.db's unsynced writes happen to reach the disk while audit.db's do not (the page cache
    writes files back independently). No outcome may be left without its audit row, at FULL
    (nothing is unsynced) or at NORMAL (the outbox row must not be cleared before its audit row
    is durable). tests/power_loss/repro.py set_action is the same, as a script."""
    d = tmp_path
    run = powerloss.run_writer(python_writer("set_action", *store_args(d, sync, 70, "det"), "--cluster", stub.base,
                                             "--die-at-end"), shim, str(d / "device"))
    assert run.killed and len(run.acks) == 70 and {a["status"] for a in run.acks} == {200}, run.stderr
    if sync == "NORMAL":
        assert raw_rows(str(d / "jobs.db"), "SELECT COUNT(*) FROM audit_outbox")[0][0] < 70, "no batch was removed"
    powerloss.cut(str(d / "device"), "all", reached_disk=lambda p: os.path.basename(p) in ("jobs.db", "jobs.db-wal"))
    jobs, audit = str(d / "jobs.db"), str(d / "audit.db")
    assert integrity(jobs) == "ok" and integrity(audit) == "ok"
    reopen_and_verify(jobs, audit).close()
    status = dict(raw_rows(jobs, "SELECT job_id, status FROM jobs"))
    cid_of = dict(raw_rows(jobs, "SELECT job_id, cid FROM job_customers"))
    audited = audited_cids(audit)
    missing = sorted(cid_of[j] for j, s in status.items() if s != "IN_PROGRESS" and cid_of[j] not in audited)
    FIGURES[f"set_action {sync} (jobs.db reached the disk, audit.db did not)"].update(
        {"outcomes": sum(s != "IN_PROGRESS" for s in status.values()), "outcomes_without_audit_row": len(missing)})
    assert not missing, f"{len(missing)} of {len(status)} outcomes without their audit row at {sync}: {missing}"


def test_a_full_process_settling_a_normal_apps_rows_syncs_their_audit_rows_first(shim, tmp_path, stub):
    """An app at NORMAL answers 20 Set Actions (delivered, not yet removed: below its batch) and
    dies; then an operator's `tms verify-audit` (FULL) opens the store, which delivers and settles
    the outbox. It dies at each of its writes and syncs in turn, and the power goes: the app's
    outbox rows may only have been removed once their audit rows were on disk."""
    base = tmp_path / "app"
    base.mkdir()
    run = powerloss.run_writer(python_writer("set_action", *store_args(base, "NORMAL", 20, "mix"), "--cluster", stub.base,
                                             "--die-at-end"), shim, str(base / "device"))
    assert run.killed and len(run.acks) == 20, run.stderr
    d, kept = tmp_path / "d", tmp_path / "kept"
    shutil.copytree(base, kept)
    rounds = 0
    for k in itertools.count(1):
        shutil.rmtree(base)
        shutil.copytree(kept, base)  # the undo log names the app's paths: replay in place
        tool = powerloss.run_writer([TMS, "--jobs-db", str(base / "jobs.db"), "--audit-db", str(base / "audit.db"),
                                     "verify-audit"], shim, str(base / "device"), crash_at=k)
        powerloss.cut(str(base / "device"), "all")
        jobs, audit = str(base / "jobs.db"), str(base / "audit.db")
        reopen_and_verify(jobs, audit).close()
        status = dict(raw_rows(jobs, "SELECT job_id, status FROM jobs"))
        cid_of = dict(raw_rows(jobs, "SELECT job_id, cid FROM job_customers"))
        audited = audited_cids(audit)
        missing = sorted(cid_of[j] for j, s in status.items() if s != "IN_PROGRESS" and cid_of[j] not in audited)
        assert not missing, f"crash at the tool's write/sync {k}: outcomes without their audit row: {missing}"
        rounds += 1
        if not tool.killed:
            break
    FIGURES["set_action NORMAL app, FULL tool"].update({"cuts": rounds, "outcomes_without_audit_row": 0})
    assert rounds > 5, "the tool made too few writes to test anything"


def test_set_action_io_errors_then_power_loss(shim, tmp_path, stub):
    """An I/O error (a write, truncation or sync failing with EIO, once or three times in a row) at
    a random point of a run of Set Actions at FULL, then the power goes with the app still
    running. An answer without a warning promises the outcome and its audit row; an answer whose
    warning says "its audit row was written" promises the audit row. Every file passes
    integrity_check and the chain verifies."""
    figures = FIGURES["set_action FULL, EIO"]
    rng = rng_for("eio")
    rounds = Rounds(shim, tmp_path, "set_action FULL, EIO")

    def argv(d):
        return python_writer("set_action", *store_args(d, "FULL", 10, f"io{rounds.k}"), "--cluster", stub.base)

    def prepare(d):  # the store exists: the errors hit the Set Actions, not the open
        tms.Store(str(d / "jobs.db"), str(d / "audit.db")).close()

    rounds.calibrate(argv, prepare)
    broken = []
    for i in range(24 * STRESS):
        d = rounds.new_dir()
        prepare(d)
        fail_at, count = rng.randint(1, rounds.length), rng.choice([1, 1, 3])
        run = powerloss.run_writer(argv(d) + ["--die-at-end"], shim, str(d / "device"),
                                   env_extra={"CRASHVFS_FAIL_AT": str(fail_at), "CRASHVFS_FAIL_COUNT": str(count)})
        assert run.killed, run.stderr[-2000:]
        mode = ["all", "files", "torn"][i % 3]
        powerloss.cut(str(d / "device"), mode, rng)
        figures["cuts"] += 1
        figures["acked"] += len(run.acks)
        jobs, audit = checked_files(d)
        status = dict(raw_rows(jobs, "SELECT job_id, status FROM jobs"))
        audited = audited_cids(audit)
        for a in run.acks:
            if a.get("job") is None:
                figures["refused"] += 1
                continue
            warning = a.get("warning")
            if warning is not None:
                figures["warning: " + ("audit row written" if "its audit row was written" in warning else
                                       "audit row waits" if "waits with it" in warning else "other")] += 1
            outcome_kept = status.get(a["job"]) not in (None, "IN_PROGRESS")
            audit_kept = a["cid"] in audited
            if warning is None and not (outcome_kept and audit_kept):
                broken.append((str(d), fail_at, count, mode, a, outcome_kept, audit_kept))
            elif warning is not None and "its audit row was written" in warning and not audit_kept:
                broken.append((str(d), fail_at, count, mode, a, outcome_kept, audit_kept))
    figures["broken_promises"] += len(broken)
    assert not broken, broken[:3]
