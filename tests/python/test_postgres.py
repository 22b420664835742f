"""Several dashboard hosts on one PostgreSQL database: processes stand in for hosts. Every test
uses a fresh schema on the server in TMS_TEST_PG_URL (scripts/with-postgres.sh starts one); a
missing server fails these tests, never skips them."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import tms
from conftest import (BINDINGS, CRASH_WRITER, FIXTURES, ROOT, SLOW_SET_ACTION, START_TOGETHER, WORKER,
                      assert_overlapped, pg_tool, psql, python, together)




def host(code, *args, env=None):
    """A process standing in for a dashboard host, with the binding importable."""
    return python(code, *args, env=env)


def test_two_hosts_write_at_once_and_the_chain_stays_one(pg, tmp_path):
    pg.open().close()
    per_thread = 40
    env = together(tmp_path, 2)
    hosts = [host(WORKER, pg.jobs, f"h{n}", str(per_thread), env=env) for n in range(2)]
    outputs = []
    for h in hosts:
        out, err = h.communicate(timeout=300)
        assert h.returncode == 0, out + err
        outputs.append(out)
    assert_overlapped(outputs)
    total = 2 * 4 * per_thread
    assert pg.rows("SELECT COUNT(*) FROM jobs") == [(total,)]
    assert pg.rows("SELECT COUNT(*) FROM job_customers") == [(2 * total,)]
    # One chain: no gaps, no forks (every seq once, 1..N), ids in seq order.
    assert pg.rows("SELECT COUNT(*), MIN(chain_seq), MAX(chain_seq), COUNT(DISTINCT chain_seq) FROM audit_log") == [
        (total, 1, total, total)]
    assert pg.rows("SELECT COUNT(*) FROM (SELECT id, chain_seq, row_number() OVER (ORDER BY id) AS n FROM audit_log) x "
                   "WHERE chain_seq != n") == [(0,)]
    with pg.open() as s:
        v = s.verify_audit()
        assert v["ok"] and v["checked"] == total, v


CHAIN_WRITER = START_TOGETHER + """
import sys, tms
s = tms.Store(sys.argv[1], audit_hmac_key="pg-chain-key-0123456789")
start = start_together()
for i in range(int(sys.argv[3])):
    s.record_audit(sys.argv[2], "Trans-Begin", [f"c{i}"])
span(start)
"""


def test_four_concurrent_writers_keep_one_keyed_chain(pg, tmp_path):
    pg.open(audit_hmac_key="pg-chain-key-0123456789").close()
    env = together(tmp_path, 4)
    writers = [host(CHAIN_WRITER, pg.jobs, f"w{n}", "60", env=env) for n in range(4)]
    outputs = []
    for w in writers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        outputs.append(out)
    assert_overlapped(outputs)
    with pg.open(audit_hmac_key="pg-chain-key-0123456789") as s:
        v = s.verify_audit()
        assert v["ok"] and v["checked"] == 240 and v["head"]["seq"] == 240, v
        assert v["head"]["hash"].startswith("hmac-sha256:")


MIGRATOR = START_TOGETHER + """
import sys, tms
start = start_together()
tms.Store(sys.argv[1]).close()
span(start)
print("ok")
"""


def test_hosts_starting_together_migrate_once(pg, tmp_path):
    env = together(tmp_path, 6)
    hosts = [host(MIGRATOR, pg.jobs, env=env) for _ in range(6)]
    outputs = []
    for h in hosts:
        out, err = h.communicate(timeout=120)
        assert h.returncode == 0 and out.splitlines()[-1] == "ok", err
        outputs.append(out)
    # At least two opens were under way at once (the migration's race); a loaded machine may
    # start the others late.
    assert_overlapped(outputs, at_least=2)
    assert pg.rows("SELECT component, version FROM tms_schema") == [("store", 4)]
    assert pg.rows("SELECT COUNT(*) FROM audit_chain_head") == [(1,)]


def test_kill_9_of_a_writer_loses_nothing_it_acknowledged(pg):
    pg.open().close()
    rng = random.Random(20261129)
    jobs_seen, audits_seen = [], []
    for round_no in range(8):
        proc = host(CRASH_WRITER, pg.jobs, str(round_no))
        first = proc.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out = first + proc.stdout.read()
        proc.wait()
        for line in out.splitlines(keepends=True):
            parts = line.split()
            if line.endswith("\n") and len(parts) == 2:
                (jobs_seen if parts[0] == "J" else audits_seen).append(parts[1])
    assert len(jobs_seen) >= 8
    have = {r[0] for r in pg.rows("SELECT job_id FROM jobs")}
    assert set(jobs_seen) <= have
    assert pg.rows("SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_customers c "
                   "WHERE c.job_id = j.job_id) != 5") == [(0,)]
    assert {int(a) for a in audits_seen} <= {r[0] for r in pg.rows("SELECT id FROM audit_log")}
    with pg.open() as s:
        assert s.verify_audit()["ok"]


def test_tampering_with_psql(pg):
    with pg.open() as s:
        for u in ("u1", "u2", "u3"):
            s.record_audit(u, "Trans-Begin", ["c1"])
        # The triggers refuse every writer of the database...
        for sql in ("UPDATE audit_log SET status = 'failure'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(subprocess.CalledProcessError) as refused:
                psql(pg.jobs, sql)
            assert "audit_log is append-only" in refused.value.stderr, (sql, refused.value.stderr)
        assert s.verify_audit()["ok"]
        # ...and the chain shows what an owner who lifts them does.
        psql(pg.jobs, "ALTER TABLE audit_log DISABLE TRIGGER USER; UPDATE audit_log SET user_id = 'mallory' "
                      "WHERE chain_seq = 2; ALTER TABLE audit_log ENABLE TRIGGER USER")
        v = s.verify_audit()
        assert not v["ok"] and (v["first_problem"]["problem"], v["first_problem"]["seq"]) == ("altered", 2)


def test_a_wrong_password_is_refused_without_showing_it(pg):
    pw_url = os.environ["TMS_TEST_PG_PW_URL"]
    wrong = pw_url.replace(":right-password@", ":not-the-password-42@")
    with pytest.raises(tms.CantOpenError) as info:
        tms.Store(wrong)
    assert "password authentication failed" in str(info.value)
    assert "not-the-password-42" not in str(info.value) and "right-password" not in str(info.value)


def test_the_legacy_fixtures_copy_onto_the_server(pg, fixture_copy):
    src = tms.Store(fixture_copy("jobs.db"), fixture_copy("audit.db"))
    src.cache_put("c1", {"apps": []})
    with pg.open() as dst:
        report = src.copy_into(dst)
        assert (report["jobs"]["copied"], report["customers_copied"], report["audit"]["copied"]) == (20, 106, 7)
        assert report["audit_verification"]["ok"] and report["audit_verification"]["unchained"] == 7
        assert src.copy_into(dst)["jobs"]["already_there"] == 20  # safe to run again
        assert dst.get_user_jobs("test_user_001", 500) == src.get_user_jobs("test_user_001", 500)
        assert dst.cache_get("c1") == {"apps": []}
        dst.record_audit("after", "PE-Enable")  # the copy's chain goes on
        assert dst.verify_audit()["ok"]
    src.close()


FORKER = """
import os, sys, tms
s = tms.Store(sys.argv[1])
s.create_job("parent", 1, "Trans-Begin", ["p0"])  # the pool now holds a connection
children = []
for c in range(3):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for i in range(20):
                s.create_job(f"child{c}", 1, "Trans-Begin", [f"c{c}-{i}"])
                s.record_audit(f"child{c}", "Trans-Begin")
        except BaseException as e:
            print(repr(e), flush=True)
            code = 1
        os._exit(code)
    children.append(pid)
for i in range(20):
    s.create_job("parent", 1, "Trans-Begin", [f"p{i + 1}"])  # the parent's connection still works
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(codes)
sys.exit(1 if any(codes) else 0)
"""


def test_children_forked_after_open_use_connections_of_their_own(pg):
    proc = host(FORKER, pg.jobs)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert pg.rows("SELECT COUNT(*) FROM jobs") == [(81,)]
    assert pg.rows("SELECT COUNT(*) FROM audit_log") == [(60,)]


def test_recovery_on_another_host_leaves_a_job_in_flight_alone(pg):
    # Another host in another time zone opens and recovers: the server's clock decides.
    recovering_with_a_call_in_flight(pg, dict(os.environ, PYTHONPATH=BINDINGS, TZ="UTC"),
                                     dict(os.environ, PYTHONPATH=BINDINGS, TZ="Asia/Kolkata"))


def recovering_with_a_call_in_flight(pg, writer_env, recovering_env):
    """A Set Action (in a process with `writer_env`) is held at the cluster while another host
    (with `recovering_env`) opens the store and recovers: it must leave the call alone, which then
    records its outcome. The cluster answers only when released, so the call is surely in flight
    (one that ended first would pass without testing anything)."""
    from stub_cluster import StubCluster

    with StubCluster(slow_seconds=60.0) as slow:
        pg.open().close()
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SET_ACTION, pg.jobs, slow.base], env=writer_env,
                                stdout=subprocess.PIPE, text=True)
        assert slow.slow_arrived.wait(30), "the Set Action never reached the cluster"
        other = subprocess.run([sys.executable, "-c", "import sys, tms; print(tms.Store(sys.argv[1]).recover_interrupted())",
                                pg.jobs], env=recovering_env, capture_output=True, text=True, timeout=60)
        assert other.stdout.strip() == "0", other.stderr
        assert pg.rows("SELECT status FROM jobs") == [("IN_PROGRESS",)]
        slow.release()
        answer = json.loads(proc.stdout.readline())
        proc.wait(timeout=30)
        assert answer[0] == 200 and answer[1]["status"] == "success", answer
        assert pg.rows("SELECT status FROM jobs") == [("SUCCESS",)]


def test_the_server_tools_are_there():
    """The suites depend on psql and pg_dump; say so plainly when they are missing."""
    for tool in ("psql", "pg_dump"):
        assert subprocess.run([pg_tool(tool), "--version"], capture_output=True).returncode == 0, tool
    assert os.path.exists(os.path.join(FIXTURES, "jobs.db"))


SKEW_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
/* This host's wall clock runs SKEW_S seconds off (the monotonic clock is left alone). */
int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    const char *skew = getenv("SKEW_S");
    if (r == 0 && skew && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += atol(skew);
    return r;
}
"""


@pytest.mark.parametrize("skew_s", [7200, -7200])
def test_recovery_on_a_host_whose_clock_is_off_leaves_a_job_in_flight_alone(pg, tmp_path, skew_s):
    """Hosts' clocks disagree: the writer's and the recovering host's are two hours apart either
    way. Recovery judges a job's age by the server's clock only (touched_at = now() in SQL), so a
    live call is not marked interrupted, and a dead one still is."""
    shim = tmp_path / "skew.so"
    (tmp_path / "skew.c").write_text(SKEW_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(tmp_path / "skew.c"), "-ldl"], check=True)
    skewed = dict(os.environ, PYTHONPATH=BINDINGS, LD_PRELOAD=str(shim), SKEW_S=str(skew_s))
    # The shim bites: the skewed host's wall clock is off by the skew.
    seen = subprocess.run([sys.executable, "-c", "import time; print(int(time.time()))"], env=skewed,
                          capture_output=True, text=True, timeout=30)
    assert abs(int(seen.stdout) - time.time() - skew_s) < 60, seen
    recovering_with_a_call_in_flight(pg, dict(skewed, SKEW_S=str(-skew_s)), skewed)  # the writer off the other way
    # A job that really was left behind (touched 20 minutes ago by the server's clock) is
    # still recovered by the skewed host.
    pg.rows("UPDATE jobs SET status = 'IN_PROGRESS', touched_at = now() - interval '20 minutes'")
    other = subprocess.run([sys.executable, "-c", "import sys, tms; print(tms.Store(sys.argv[1]).recover_interrupted())",
                            pg.jobs], env=skewed, capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    assert pg.rows("SELECT status FROM jobs") == [("FAILED",)]
