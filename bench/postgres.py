"""PostgreSQL beside SQLite: create_job (3, 150 and 27,682 IDs), record_audit, get_user_jobs(50),
get_job and get_job_customers through libtms natively and via ctypes on both engines, at FULL and
NORMAL (on PostgreSQL: synchronous_commit on and off), and the throughput of 1 writer and of 8
writers in 2 processes sharing one store. Also the round trips each call takes on PostgreSQL
(counted by a loopback proxy, tests/python/pg_proxy.py) beside the floor, one prepared
statement's round trip on one connection; the four calls with targets again with a sleep before
each call on both engines (a PostgreSQL call sleeps inside, waiting for the server, and on this
VM work after a sleep runs slower); and (in the full run, or with --copy) the time of `tms copy`
of 100,000 jobs from SQLite files onto PostgreSQL. `--quick` is the smoke run;
`--markdown FILE` writes the tables.

It needs a server: `--url`, else TMS_TEST_PG_URL (a role that may create schemas). `make bench`
runs it under scripts/with-postgres.sh, which starts a throwaway one. Each PostgreSQL store of a
run lives in a schema of its own (bench_<run>_<name>, as the tests do), all dropped at the end,
whatever happens.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bindings", "python"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "python"))

import tms  # noqa: E402
from pg_proxy import RoundTripProxy  # noqa: E402
from run import NATIVE, fmt_us, ids, native, timed_samples  # noqa: E402

TOOL = os.path.join(os.path.dirname(HERE), "target", "release", "tms")

ROUNDS_WRITERS = 3  # the full run's; the smoke run (make test) takes one, to stay short
FULL = {"iters": {3: 300, 150: 99, 27682: 9}, "small_iters": 300, "read_iters": 200,
        "big_jobs": 20_000, "big_per_job": 50, "writer_ms": 8000, "writer_rounds": ROUNDS_WRITERS}
QUICK = {"iters": {3: 21, 150: 9, 27682: 3}, "small_iters": 20, "read_iters": 20,
         "big_jobs": 2_000, "big_per_job": 10, "writer_ms": 500, "writer_rounds": 1}
ROUNDS = 3
ENGINES = ("SQLite", "PostgreSQL")
KINDS = [(e, "native") for e in ENGINES] + [(e, "ctypes") for e in ENGINES]
SYNCS = {"FULL": "FULL (on)", "NORMAL": "NORMAL (off)"}  # PostgreSQL's synchronous_commit in brackets
# Writer processes start together at a common time this far ahead: enough to exec, open the
# store and connect each thread, so that the connects are not counted (700 ms was once too short
# here with the machine's load at 7).
WRITER_LEAD_MS = 1500


def psql(url, sql):
    tool = os.path.join(os.environ["TMS_TEST_PG_BIN"], "psql") if os.environ.get("TMS_TEST_PG_BIN") else "psql"
    out = subprocess.run([tool, url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql: {out.stderr.strip()}")
    return out.stdout.strip()


def with_param(url, param):
    return url + ("&" if "?" in url else "?") + param


class Stores:
    """This run's stores: SQLite directories under a temp dir, PostgreSQL schemas on the server."""

    def __init__(self, url):
        self.url = url
        self.run = uuid.uuid4().hex[:8]
        self.base = tempfile.mkdtemp(prefix="tms-pgbench-")
        self.dirs, self.schemas = [], []

    def new(self, engine, name):
        """A fresh store's location, for tms.Store and the native bench alike."""
        if engine == "SQLite":
            d = os.path.join(self.base, name)
            os.makedirs(d)
            self.dirs.append(d)
            return d
        schema = f"bench_{self.run}_{name}".lower()
        psql(self.url, f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        return with_param(self.url, f"options=-csearch_path%3D{schema}")

    def schema_bytes(self, location):
        schema = location.rsplit("%3D", 1)[1]
        return int(psql(self.url, "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                                  f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relkind = 'r'"))

    def free(self):
        """Remove every store made so far: a finished case's tables would keep the server's
        autovacuum (and the disk) busy during the next case."""
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        if self.schemas:
            psql(self.url, f"DROP SCHEMA IF EXISTS {', '.join(self.schemas)} CASCADE")
        self.dirs, self.schemas = [], []

    def close(self):
        try:
            self.free()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def open_store(location, sync):
    if location.startswith(("postgresql://", "postgres://")):
        return tms.Store(location, synchronous=sync)
    return tms.Store(os.path.join(location, "jobs.db"), os.path.join(location, "audit.db"), synchronous=sync)


def interleaved(where, sync, iters, make_call, mode, n_ids=3):
    """One case on both engines, natively (`mode` of the bench example) and via ctypes
    (`make_call(store)` gives the timed call), alternated in ROUNDS rounds as bench/run.py does,
    so that drift in the machine (I/O bursts, a neighbour's load, the server's autovacuum) falls
    on all four alike; medians over all rounds. `where` maps (engine, kind) to a location."""
    opened = {e: open_store(where[(e, "ctypes")], sync) for e in ENGINES}
    calls = {e: make_call(opened[e]) for e in ENGINES}
    samples = {kind: [] for kind in KINDS}
    rounds = {kind: [] for kind in KINDS}  # each round's median, for the spread
    per_round = max(1, iters // ROUNDS)
    for r in range(ROUNDS):
        for e in ENGINES:
            got = timed_samples(per_round, calls[e], r * per_round)
            samples[(e, "ctypes")] += got
            rounds[(e, "ctypes")].append(statistics.median(got))
        for e in ENGINES:
            got = native(mode, where[(e, "native")], sync, per_round, n_ids, tag=f"r{r}")["samples_us"]
            samples[(e, "native")] += got
            rounds[(e, "native")].append(statistics.median(got))
    for store in opened.values():
        store.close()
    result = {kind: statistics.median(v) for kind, v in samples.items()}
    # PostgreSQL/SQLite via ctypes, round by round (both measured in the same round).
    result["ratios"] = [p / q for p, q in zip(rounds[("PostgreSQL", "ctypes")], rounds[("SQLite", "ctypes")]) if q]
    return result


def fresh(stores, name):
    """A fresh store per engine and kind, as bench/run.py gives each implementation its own."""
    return {(e, k): stores.new(e, f"{name}_{k}") for e, k in KINDS}


def bench_create(stores, sync, n_ids, iters):
    lists = [ids(f"L{i}-", n_ids) for i in range(iters)]

    def make_call(store):
        return lambda i: store.create_job("bench", 1, "Trans-Begin", lists[i % iters])

    return interleaved(fresh(stores, f"c{n_ids}_{sync}"), sync, iters, make_call, "native-create", n_ids)


def bench_audit(stores, sync, iters):
    def make_call(store):
        return lambda i: store.record_audit("bench", "Trans-Begin", ["c1", "c2", "c3"])

    return interleaved(fresh(stores, f"log_{sync}"), sync, iters, make_call, "native-log")


def bench_reads(big, sync, iters):
    """Both kinds read the same populated store of each engine."""
    where = {(e, k): big[e] for e, k in KINDS}

    def listing(store):
        return lambda i: store.get_user_jobs("user7", 50)

    def job(store):
        job_id = store.get_user_jobs("user7", 1)[0]["job_id"]
        return lambda i: store.get_job(job_id)

    def customers(store):
        job_id = store.get_user_jobs("user7", 1)[0]["job_id"]
        return lambda i: store.get_job_customers(job_id)

    return (interleaved(where, sync, iters, listing, "native-list"),
            interleaved(where, sync, iters, job, "native-job"),
            interleaved(where, sync, iters, customers, "native-customers"))


# Pauses before each call in `calls_after_a_wait`: about one loopback round trip, and a short
# gap between a web app's requests.
WAITS_S = (100e-6, 1e-3)


def calls_after_a_wait(big, iters):
    """The four calls with targets (create_job of 3 IDs, record_audit, get_job, get_job_customers)
    via ctypes on both engines with the thread asleep for each of WAITS_S before every call
    (untimed), as a web app's calls come after a wait; NORMAL/off, on the populated stores.

    A PostgreSQL call sleeps inside itself, waiting for the server; what runs after a sleep runs
    slower on this VM (caches and the core's state lost: the same SQLite get_job costs about twice
    as much after a 100 µs sleep). The hot loops above charge that to PostgreSQL alone; here both
    engines pay it. Returns {(call, wait_s): (SQLite µs, PostgreSQL µs, [ratio per round])}."""
    opened = {e: open_store(big[e], "NORMAL") for e in ENGINES}
    out = {}
    try:
        job_id = {e: opened[e].get_user_jobs("user7", 1)[0]["job_id"] for e in ENGINES}
        calls = {
            "create_job 3 IDs": lambda s, j, i: s.create_job("bench", 1, "Trans-Begin", ids(f"w{i}-", 3)),
            "record_audit": lambda s, j, i: s.record_audit("bench", "Trans-Begin", ["c1", "c2", "c3"]),
            "get_job": lambda s, j, i: s.get_job(j),
            "get_job_customers": lambda s, j, i: s.get_job_customers(j),
        }
        per_round = max(1, iters // ROUNDS)
        for name, call in calls.items():
            for w, wait in enumerate(WAITS_S):
                samples = {e: [] for e in ENGINES}
                ratios = []
                for r in range(ROUNDS):
                    medians = {}
                    start = (w * ROUNDS + r) * per_round  # fresh IDs for every create_job
                    for e in ENGINES[::1 if r % 2 == 0 else -1]:  # each engine first in turn
                        got = timed_samples(per_round, lambda i, e=e: call(opened[e], job_id[e], i), start, pause_s=wait)
                        samples[e] += got
                        medians[e] = statistics.median(got)
                    ratios.append(medians["PostgreSQL"] / medians["SQLite"])
                out[(name, wait)] = (statistics.median(samples["SQLite"]), statistics.median(samples["PostgreSQL"]), ratios)
    finally:
        for s in opened.values():
            s.close()
    return out


def round_trips(url, stores, iters):
    """Round trips per call on PostgreSQL (after the connection prepared its statements), counted
    by a proxy; and the floor: one prepared statement's round trip, natively, on one connection."""
    location = stores.new("PostgreSQL", "round_trips")
    base, schema = location.split("options=", 1)
    counts = {}
    with RoundTripProxy(base.rstrip("?&")) as proxy:
        store = tms.Store(with_param(proxy.url, "options=" + schema), synchronous="NORMAL")
        job = store.create_job("u", 1, "Trans-Begin", ["c1", "c2", "c3"])["job_id"]
        big = ids("rt-", 150)
        cases = {
            "create_job 3 IDs": lambda i: store.create_job("u", 1, "Trans-Begin", ids(f"rt{i}-", 3)),
            "create_job 150 IDs": lambda i: store.create_job("u", 1, "Trans-Begin", [f"{i}-{c}" for c in big]),
            "record_audit": lambda i: store.record_audit("u", "Trans-Begin", ["c1"]),
            "get_job": lambda i: store.get_job(job),
            "get_job_customers": lambda i: store.get_job_customers(job),
            "get_user_jobs(50)": lambda i: store.get_user_jobs("u", 50),
            "update_job": lambda i: store.update_job(job, "SUCCESS", http_status=200),
            "cache_put": lambda i: store.cache_put(f"c{i}", {"ready": True}),
        }
        for name, call in cases.items():
            call(0)
            call(1)  # the connection has prepared the call's statements
            before = proxy.round_trips
            for i in range(10):
                call(2 + i)
            counts[name] = (proxy.round_trips - before) / 10
        store.close()
    floor = native("floor-pg", location, "NORMAL", iters)
    return counts, floor["median_us"], statistics.quantiles(floor["samples_us"], n=10)


def bench_copy(url, stores, jobs, audit_rows):
    """`tms copy` of a SQLite store (jobs x 3 customers, audit rows) onto a fresh PostgreSQL
    schema, on loopback; seconds."""
    src = stores.new("SQLite", "copy_src")
    native("populate", src, "NORMAL", jobs, 3)
    with tms.Store(os.path.join(src, "jobs.db"), os.path.join(src, "audit.db"), synchronous="NORMAL") as s:
        for i in range(audit_rows):
            s.record_audit("u", "Trans-Begin", [f"c{i}"])
    dst = stores.new("PostgreSQL", "copy_dst")
    t = time.monotonic()
    out = subprocess.run([TOOL, "--jobs-db", os.path.join(src, "jobs.db"), "--audit-db", os.path.join(src, "audit.db"),
                          "copy", "--to", dst], capture_output=True, text=True)
    seconds = time.monotonic() - t
    if out.returncode != 0:
        raise RuntimeError(f"tms copy: {out.stderr}")
    copied = psql(url, f"SELECT (SELECT COUNT(*) FROM {dst.rsplit('%3D', 1)[1]}.jobs)")
    return seconds, int(copied)


def writers(location, sync, processes, threads, millis):
    """Jobs/s of processes x threads writers on one store, all in one window of `millis`."""
    start = int(time.time() * 1000) + WRITER_LEAD_MS
    cmd = [NATIVE, "writers", location, sync, str(millis), str(threads), str(start)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"writers: {err}")
        results.append(json.loads(out))
    jobs = sum(r["jobs"] for r in results)
    late = None
    if any(r["late"] for r in results):  # what each process did, to judge the figure by
        late = ", ".join(f"{r['jobs']} jobs in {r['seconds']:.1f} s" for r in results)
    return jobs / max(r["seconds"] for r in results), late


def run(quick, url, copy=False):
    """Both engines, every case; returns (Markdown table lines, notes)."""
    if not url:
        raise RuntimeError("no PostgreSQL server: pass a URL (bench/postgres.py --url, or TMS_TEST_PG_URL)")
    cfg = QUICK if quick else FULL
    stores = Stores(url)
    results, rates, notes = {}, {}, []
    began = time.monotonic()
    try:
        for sync in SYNCS:
            for n in (3, 150, 27682):
                results[(f"create_job {n} IDs", sync)] = bench_create(stores, sync, n, cfg["iters"][n])
                stores.free()
            results[("record_audit", sync)] = bench_audit(stores, sync, cfg["small_iters"])
            stores.free()

        big = {e: stores.new(e, "reads") for e in ENGINES}
        fill = {e: native("populate", big[e], "NORMAL", cfg["big_jobs"], cfg["big_per_job"]) for e in ENGINES}
        for sync in SYNCS:
            lst, job, cust = bench_reads(big, sync, cfg["read_iters"])
            results[("get_user_jobs(50)", sync)] = lst
            results[("get_job", sync)] = job
            results[("get_job_customers", sync)] = cust
        sqlite_mib = sum(os.path.getsize(os.path.join(big["SQLite"], f)) for f in os.listdir(big["SQLite"])) / 2**20
        pg_mib = stores.schema_bytes(big["PostgreSQL"]) / 2**20
        notes.append(f"reads on {cfg['big_jobs']:,} jobs x {cfg['big_per_job']} IDs = "
                     f"{cfg['big_jobs'] * cfg['big_per_job']:,} customer rows over 100 users: SQLite files {sqlite_mib:.0f} MiB, "
                     f"PostgreSQL tables and indexes {pg_mib:.0f} MiB (filled in {fill['SQLite']['seconds']:.0f} s and "
                     f"{fill['PostgreSQL']['seconds']:.0f} s, then VACUUM ANALYZE)")
        # After the sizes: its create_job and record_audit calls add rows to these stores.
        waited = calls_after_a_wait(big, cfg["read_iters"])
        stores.free()
        for (name, wait), (sq, pg, r) in waited.items():
            notes.append(f"{name} after a {fmt_us(wait * 1e6)} sleep before each call (both engines; NORMAL/off, via ctypes): "
                         f"SQLite {fmt_us(sq)}, PostgreSQL {fmt_us(pg)}, {ratio(pg, sq)} ({min(r):.2f}-{max(r):.2f}x per round)")

        for sync in SYNCS:
            where = {}
            for e in ENGINES:
                where[e] = stores.new(e, f"writers_{sync}")
                open_store(where[e], sync).close()  # the schema exists before the window opens
            for label, processes, threads in (("1 writer", 1, 1), ("8 writers (2 processes x 4 threads)", 2, 4)):
                per_round = {e: [] for e in ENGINES}
                for _ in range(cfg["writer_rounds"]):  # the engines alternate, round by round
                    for e in ENGINES:
                        rate, late = writers(where[e], sync, processes, threads, cfg["writer_ms"])
                        per_round[e].append(rate)
                        if late:
                            notes.append(f"{label}, {e}, {sync}: a writer was ready after the common start ({late})")
                for e in ENGINES:
                    rates[(label, sync, e)] = statistics.median(per_round[e])
                rates[(label, sync, "ratios")] = [p / q for p, q in zip(per_round["PostgreSQL"], per_round["SQLite"])]
            stores.free()
        counts, floor_us, floor_deciles = round_trips(url, stores, cfg["read_iters"] * 5)
        stores.free()
        notes.append("round trips per call on PostgreSQL (counted by a loopback proxy, after the connection prepared "
                     "its statements): " + ", ".join(f"{name} {n:g}" for name, n in counts.items()))
        notes.append(f"floor: one prepared statement's round trip on one connection (natively, no library) "
                     f"{fmt_us(floor_us)} (deciles 1-9: {fmt_us(floor_deciles[0])}-{fmt_us(floor_deciles[-1])})")
        if copy or not quick:
            seconds, copied = bench_copy(url, stores, 100_000, 10_000)
            stores.free()
            notes.append(f"copy: `tms copy` of {copied:,} jobs x 3 customers and 10,000 audit rows from SQLite files "
                         f"onto PostgreSQL over loopback: {seconds:.1f} s (one run)")
        notes.append(f"writers: 3-ID create_job calls for {cfg['writer_ms'] / 1000:g} s per round, native; "
                     "the processes share one store (SQLite: one jobs.db/audit.db; PostgreSQL: one schema)")
        server = psql(url, "SELECT current_setting('server_version') || ', fsync ' || current_setting('fsync') || ', wal_sync_method ' "
                           "|| current_setting('wal_sync_method') || ', commit_delay ' || current_setting('commit_delay')")
        notes.append(f"PostgreSQL {server}; on the same machine, over TCP loopback; FULL = synchronous_commit on, "
                     "NORMAL = off (SQLite: PRAGMA synchronous)")
    finally:
        stores.close()
    notes.append(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
                 f"run took {time.monotonic() - began:.0f} s")
    return render(results, rates), notes


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def render(results, rates):
    cols = [f"{e} {k}" for e, k in KINDS]
    lines = ["| case | sync | " + " | ".join(cols) + " | PostgreSQL/SQLite (ctypes) | per round |",
             "|" + "---|" * (len(cols) + 4)]
    for (case, sync), r in results.items():
        spread = f"{min(r['ratios']):.2f}-{max(r['ratios']):.2f}x" if r["ratios"] else "-"
        cells = [fmt_us(r[kind]) for kind in KINDS] + [ratio(r[("PostgreSQL", "ctypes")], r[("SQLite", "ctypes")]), spread]
        lines.append(f"| {case} | {SYNCS[sync]} | " + " | ".join(cells) + " |")
    lines += ["", "| writers, jobs/s (median of the rounds) | sync | SQLite | PostgreSQL | PostgreSQL/SQLite | per round |",
              "|---|---|---|---|---|---|"]
    for label in ("1 writer", "8 writers (2 processes x 4 threads)"):
        for sync in SYNCS:
            s, p = rates[(label, sync, "SQLite")], rates[(label, sync, "PostgreSQL")]
            r = rates[(label, sync, "ratios")]
            lines.append(f"| {label} | {SYNCS[sync]} | {s:,.0f} | {p:,.0f} | {ratio(p, s)} | {min(r):.2f}-{max(r):.2f}x |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown")
    ap.add_argument("--url", default=os.environ.get("TMS_TEST_PG_URL"))
    ap.add_argument("--copy", action="store_true", help="also time the copy of 100,000 jobs (the full run always does)")
    args = ap.parse_args()
    if not args.url:
        sys.exit("bench/postgres.py: no PostgreSQL server: pass --url or set TMS_TEST_PG_URL "
                 "(make bench runs this under scripts/with-postgres.sh, which starts one)")
    lines, notes = run(args.quick, args.url, args.copy)
    print("\nmedians per call; PostgreSQL beside SQLite\n")
    print("\n".join(lines))
    print("\n" + "\n".join(f"- {n}" for n in notes))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"<!-- generated by bench/postgres.py{' --quick' if args.quick else ''} -->\n"
                    + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()
