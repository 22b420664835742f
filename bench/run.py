"""Side-by-side benchmark: legacy Python, strong Python, libtms via ctypes, libtms native, and
the floor (bare rusqlite), on the same schema and machine, in one run. Prints medians, ratios and
the targets of the speed issue. `--quick` is the CI smoke run (small sizes, targets not judged);
`--markdown FILE` also writes the tables as Markdown.

Run it with `make bench` (full) or `make bench-smoke`.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, HERE)

import charts  # noqa: E402
import instructions  # noqa: E402
import legacy  # noqa: E402
import tms  # noqa: E402
from strong import StrongStore  # noqa: E402

NATIVE = os.path.join(ROOT, "target", "release", "examples", "bench")
IMPLS = ["legacy", "strong", "ctypes", "native", "floor"]

FULL = {"iters": {3: 300, 150: 99, 27682: 9}, "small_iters": 300, "read_iters": 200,
        "big_jobs": 100_000, "big_per_job": 50, "memory_calls": 1_000_000, "group_jobs": 4000,
        "alternating": {"NORMAL": 2000, "FULL": 300}, "alternating_rounds": 5, "warm_up": 200}
QUICK = {"iters": {3: 21, 150: 9, 27682: 3}, "small_iters": 20, "read_iters": 20,
         "big_jobs": 6_000, "big_per_job": 10, "memory_calls": 20_000, "group_jobs": 400,
         "alternating": {"NORMAL": 30, "FULL": 10}, "alternating_rounds": 3, "warm_up": 5}


def ids(prefix, n):
    return [f"{prefix}{i:024x}" for i in range(n)]


def median_us(samples):
    return statistics.median(samples) * 1e6


def timed_samples(n, fn, start=0, pause_s=0.0):
    samples = []
    for i in range(start, start + n):
        if pause_s:
            time.sleep(pause_s)  # untimed: the gap between a web app's requests
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1e6)
    return samples


def timed(n, fn):
    return statistics.median(timed_samples(n, fn))


def native(what, d, sync, iterations, n_ids=3, tag="", pause_s=0.0):
    env = {**os.environ, "TMS_BENCH_PAUSE_US": str(int(pause_s * 1e6))}
    out = subprocess.run([NATIVE, what, d, sync, str(iterations), str(n_ids), tag], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{what}: {out.stderr}")
    return json.loads(out.stdout)


def fresh_dir(base, name):
    d = os.path.join(base, name)
    os.makedirs(d)
    tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db")).close()  # one schema for all
    return d


ROUNDS = 3


def bench_create(base, sync, n_ids, iters, pause_s=0.0):
    """create_job for every implementation, interleaved in ROUNDS rounds so that drift in the
    machine (I/O bursts, checkpoints, a neighbour's load) falls on all of them alike. Returns the
    median over all rounds per implementation, and each round's medians (for the spread)."""
    tag = f"{sync}-{n_ids}-{int(pause_s * 1000)}ms"
    dirs = {impl: fresh_dir(base, f"{impl}-{tag}") for impl in IMPLS}
    lists = [ids(f"L{i}-", n_ids) for i in range(iters)]
    strong = StrongStore(os.path.join(dirs["strong"], "jobs.db"), os.path.join(dirs["strong"], "audit.db"), sync)
    store = tms.Store(os.path.join(dirs["ctypes"], "jobs.db"), os.path.join(dirs["ctypes"], "audit.db"), synchronous=sync)
    legacy_db = os.path.join(dirs["legacy"], "jobs.db")
    samples = {impl: [] for impl in IMPLS}
    rounds = []
    per_round = max(1, iters // ROUNDS)
    for r in range(ROUNDS):
        start = r * per_round
        this = {
            "legacy": timed_samples(per_round, lambda i: legacy.create_job(legacy_db, sync, "bench", 1, "Trans-Begin", lists[i % iters]), start, pause_s),
            "strong": timed_samples(per_round, lambda i: strong.create_job("bench", 1, "Trans-Begin", lists[i % iters]), start, pause_s),
            "ctypes": timed_samples(per_round, lambda i: store.create_job("bench", 1, "Trans-Begin", lists[i % iters]), start, pause_s),
            "native": native("native-create", dirs["native"], sync, per_round, n_ids, tag=f"r{r}", pause_s=pause_s)["samples_us"],
            "floor": native("floor-create", dirs["floor"], sync, per_round, n_ids, tag=f"r{r}", pause_s=pause_s)["samples_us"],
        }
        for impl, v in this.items():
            samples[impl] += v
        rounds.append({impl: statistics.median(v) for impl, v in this.items()})
    store.close()
    return {impl: statistics.median(v) for impl, v in samples.items()}, rounds


def bench_alternating(base, sync, calls, rounds, warm_up, n_ids=3):
    """create_job, strong Python against ctypes, call by call in one loop (which goes first
    swaps every call), after `warm_up` untimed calls of each: the comparison the speed issue
    asks for, robust to a machine whose speed drifts. Each implementation on its own files.
    Returns each round's medians."""
    dirs = {impl: fresh_dir(base, f"alternating-{impl}-{sync}") for impl in ("strong", "ctypes")}
    strong = StrongStore(os.path.join(dirs["strong"], "jobs.db"), os.path.join(dirs["strong"], "audit.db"), sync)
    store = tms.Store(os.path.join(dirs["ctypes"], "jobs.db"), os.path.join(dirs["ctypes"], "audit.db"), synchronous=sync)
    create = {"strong": strong.create_job, "ctypes": store.create_job}
    made = 0

    def call(impl):
        nonlocal made
        cids = ids(f"A{made}-", n_ids)  # fresh IDs, made before the clock starts
        made += 1
        t = time.perf_counter()
        create[impl]("bench", 1, "Trans-Begin", cids)
        return (time.perf_counter() - t) * 1e6

    for _ in range(warm_up):
        call("strong")
        call("ctypes")
    per_round = []
    for _ in range(rounds):
        samples = {"strong": [], "ctypes": []}
        for i in range(calls):
            for impl in (("strong", "ctypes") if i % 2 == 0 else ("ctypes", "strong")):
                samples[impl].append(call(impl))
        per_round.append({impl: statistics.median(v) for impl, v in samples.items()})
    store.close()
    return per_round


def bench_small_writes(base, sync, iters):
    upd, log = {}, {}
    d = fresh_dir(base, f"small-legacy-{sync}")
    jdb, adb = os.path.join(d, "jobs.db"), os.path.join(d, "audit.db")
    job = legacy.create_job(jdb, sync, "bench", 1, "Trans-Begin", ["c1"])["job_id"]
    upd["legacy"] = timed(iters, lambda i: legacy.update_job(jdb, sync, job, "SUCCESS", 200))
    log["legacy"] = timed(iters, lambda i: legacy.log_action(adb, sync, "bench", "Trans-Begin", ["c1", "c2", "c3"]))
    d = fresh_dir(base, f"small-strong-{sync}")
    s = StrongStore(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), sync)
    job = s.create_job("bench", 1, "Trans-Begin", ["c1"])["job_id"]
    upd["strong"] = timed(iters, lambda i: s.update_job(job, "SUCCESS", 200))
    log["strong"] = timed(iters, lambda i: s.log_action("bench", "Trans-Begin", ["c1", "c2", "c3"]))
    d = fresh_dir(base, f"small-ctypes-{sync}")
    store = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), synchronous=sync)
    job = store.create_job("bench", 1, "Trans-Begin", ["c1"])["job_id"]
    upd["ctypes"] = timed(iters, lambda i: store.update_job(job, "SUCCESS", 200))
    log["ctypes"] = timed(iters, lambda i: store.record_audit("bench", "Trans-Begin", ["c1", "c2", "c3"]))
    store.close()
    upd["native"] = native("native-update", fresh_dir(base, f"small-native-u-{sync}"), sync, iters)["median_us"]
    log["native"] = native("native-log", fresh_dir(base, f"small-native-l-{sync}"), sync, iters)["median_us"]
    return upd, log


def bench_reads(big, sync, iters):
    jdb, adb = os.path.join(big, "jobs.db"), os.path.join(big, "audit.db")
    lst, cust = {}, {}
    store = tms.Store(jdb, adb, synchronous=sync)
    job = store.get_user_jobs("user7", 1)[0]["job_id"]
    lst["legacy"] = timed(max(3, iters // 20), lambda i: legacy.get_user_jobs(jdb, sync, "user7", 50))
    cust["legacy"] = timed(iters, lambda i: legacy.get_job_customers(jdb, sync, job))
    s = StrongStore(jdb, adb, sync)
    lst["strong"] = timed(iters, lambda i: s.get_user_jobs("user7", 50))
    cust["strong"] = timed(iters, lambda i: s.get_job_customers(job))
    lst["ctypes"] = timed(iters, lambda i: store.get_user_jobs("user7", 50))
    cust["ctypes"] = timed(iters, lambda i: store.get_job_customers(job))
    store.close()
    lst["native"] = native("native-list", big, sync, iters)["median_us"]
    cust["native"] = native("native-customers", big, sync, iters)["median_us"]
    return lst, cust


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


SPACED_S = 0.002  # a web app's calls arrive this far apart, or more


def alternating_ratio(per_round):
    """ctypes/strong over the rounds of bench_alternating: the median of the rounds' ratios."""
    return statistics.median(r["ctypes"] / r["strong"] for r in per_round)


def spread(rounds, a, b):
    """`a`/`b` in each round, as "min-max" (how far one run's figure can be trusted)."""
    ratios = [r[a] / r[b] for r in rounds]
    return min(ratios), max(ratios)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown")
    ap.add_argument("--charts", help="directory for the charts (SVG)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    base = tempfile.mkdtemp(prefix="tms-bench-")
    rows, lines = [], []
    rounds = {}
    try:
        results = {}
        for sync in ("NORMAL", "FULL"):
            for n in (3, 150, 27682):
                results[(f"create_job {n} IDs", sync)], rounds[(n, sync)] = bench_create(base, sync, n, cfg["iters"][n])
            upd, log = bench_small_writes(base, sync, cfg["small_iters"])
            results[("update_job", sync)] = upd
            results[("log_action", sync)] = log
        alternating = {sync: bench_alternating(base, sync, cfg["alternating"][sync], cfg["alternating_rounds"], cfg["warm_up"])
                       for sync in ("NORMAL", "FULL")}
        case = f"create_job 3 IDs, {SPACED_S * 1000:.0f} ms apart"
        results[(case, "NORMAL")], rounds["spaced"] = bench_create(base, "NORMAL", 3, cfg["iters"][3], SPACED_S)
        big = os.path.join(base, "big")
        os.makedirs(big)
        pop = native("populate", big, "NORMAL", cfg["big_jobs"], cfg["big_per_job"])
        for sync in ("NORMAL", "FULL"):
            lst, cust = bench_reads(big, sync, cfg["read_iters"])
            results[("get_user_jobs(50)", sync)] = lst
            results[("get_job_customers", sync)] = cust
        group = native("group-commit", fresh_dir(base, "group"), "FULL", cfg["group_jobs"])
        group_normal = native("group-commit", fresh_dir(base, "group-normal"), "NORMAL", cfg["group_jobs"])
        memory = native("memory", fresh_dir(base, "memory"), "NORMAL", cfg["memory_calls"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    counts = instructions.measure(args.quick)

    header = ["case", "sync"] + IMPLS + ["legacy/ctypes", "ctypes/floor", "native/floor", "ctypes/strong"]
    for (case, sync), r in results.items():
        rows.append([case, sync] + [fmt_us(r.get(i)) for i in IMPLS]
                    + [ratio(r.get("legacy"), r.get("ctypes")), ratio(r.get("ctypes"), r.get("floor")),
                       ratio(r.get("native"), r.get("floor")), ratio(r.get("ctypes"), r.get("strong"))])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    table = [" | ".join(str(x).ljust(w) for x, w in zip(header, widths))]
    table.append("-+-".join("-" * w for w in widths))
    table += [" | ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in rows]
    print(f"\nmedians per call; store for reads: {pop['jobs']:,} jobs, {pop['customers']:,} customer rows\n")
    print("\n".join(table))
    instruction_table = instructions.table(counts)
    print("\ninstructions per call (callgrind)\n" + "\n".join(instruction_table))

    def r(case, sync="NORMAL"):
        return results[(case, sync)]

    c3 = r("create_job 3 IDs")
    spaced = r(f"create_job 3 IDs, {SPACED_S * 1000:.0f} ms apart")
    big_rounds = rounds[(27682, "NORMAL")] + rounds[(27682, "FULL")]
    checks = [
        ("create_job 3 IDs via ctypes at NORMAL >= 25x faster than legacy",
         c3["legacy"] / c3["ctypes"], lambda x: x >= 25, "{:.1f}x", spread(rounds[(3, "NORMAL")], "legacy", "ctypes")),
        ("create_job 3 IDs via ctypes within 1.15x of the floor (NORMAL)",
         c3["ctypes"] / c3["floor"], lambda x: x <= 1.15, "{:.2f}x", spread(rounds[(3, "NORMAL")], "ctypes", "floor")),
        ("create_job 3 IDs native within 1.1x of the floor (NORMAL)",
         c3["native"] / c3["floor"], lambda x: x <= 1.1, "{:.2f}x", spread(rounds[(3, "NORMAL")], "native", "floor")),
        ("create_job 3 IDs via ctypes no slower than strong Python, alternating call by call (NORMAL)",
         alternating_ratio(alternating["NORMAL"]), lambda x: x <= 1.0, "{:.2f}x", spread(alternating["NORMAL"], "ctypes", "strong")),
        ("the same at FULL",
         alternating_ratio(alternating["FULL"]), lambda x: x <= 1.0, "{:.2f}x", spread(alternating["FULL"], "ctypes", "strong")),
        (f"the same with calls {SPACED_S * 1000:.0f} ms apart, as a web app makes them",
         spaced["ctypes"] / spaced["strong"], lambda x: x <= 1.0, "{:.2f}x", spread(rounds["spaced"], "ctypes", "strong")),
        ("update_job at NORMAL >= 30x faster than legacy",
         r("update_job")["legacy"] / r("update_job")["ctypes"], lambda x: x >= 30, "{:.1f}x", None),
        ("log_action at NORMAL >= 15x faster than legacy",
         r("log_action")["legacy"] / r("log_action")["ctypes"], lambda x: x >= 15, "{:.1f}x", None),
        ("create_job 27,682 IDs via ctypes no slower than strong Python in every round (NORMAL and FULL)",
         max(x["ctypes"] / x["strong"] for x in big_rounds), lambda x: x <= 1.0, "worst {:.2f}x",
         spread(big_rounds, "ctypes", "strong")),
        ("get_user_jobs(50) via ctypes under 1 ms",
         r("get_user_jobs(50)")["ctypes"] / 1000, lambda x: x < 1.0, "{:.3f} ms", None),
        (f"resident memory growth over {memory['calls']:,} create_job calls <= 20 MB",
         memory["growth_mib"], lambda x: x <= 20, "{:.1f} MiB", None),
    ]
    for sync, per_round in alternating.items():
        print(f"\ncreate_job 3 IDs at {sync}, strong Python and ctypes alternating call by call, "
              f"{len(per_round)} rounds of {cfg['alternating'][sync]:,} calls each (medians per round):")
        for impl in ("strong", "ctypes"):
            print(f"  {impl:6} " + "  ".join(fmt_us(x[impl]) for x in per_round)
                  + f"   median of rounds {fmt_us(statistics.median(x[impl] for x in per_round))}")
        low, high = spread(per_round, "ctypes", "strong")
        print(f"  ctypes/strong {alternating_ratio(per_round):.2f}x (rounds {low:.2f}-{high:.2f}x)")
        lines.append(f"- create_job 3 IDs at {sync}, alternating: strong "
                     f"{fmt_us(statistics.median(x['strong'] for x in per_round))}, ctypes "
                     f"{fmt_us(statistics.median(x['ctypes'] for x in per_round))} (medians of {len(per_round)} rounds "
                     f"of {cfg['alternating'][sync]:,} calls)")
    print("\ntargets" + (" (smoke run: sizes too small to judge)" if args.quick else ""))
    for name, value, ok, f, rng in checks:
        verdict = "   " if args.quick else ("met" if ok(value) else "NOT MET")
        over_rounds = f" (rounds: {rng[0]:.2f}-{rng[1]:.2f}x)" if rng else ""
        lines.append(f"- {name}: {f.format(value)}{over_rounds} {verdict}")
    for label, g in (("FULL", group), ("NORMAL", group_normal)):
        lines.append(f"- group commit at {label}: 1 thread {g['one_thread_per_s']:.0f} jobs/s (p50 {g['one_thread_p50_us']:.0f} µs, "
                     f"p99 {g['one_thread_p99_us']:.0f} µs); 8 threads {g['eight_threads_per_s']:.0f} jobs/s "
                     f"({g['ratio']:.2f}x; p50 {g['eight_threads_p50_us']:.0f} µs, p99 {g['eight_threads_p99_us']:.0f} µs)")
    lines.append(f"- memory detail: RSS {memory['rss_before_kib'] / 1024:.1f} -> {memory['rss_after_kib'] / 1024:.1f} MiB "
                 f"in {memory['seconds']:.0f} s")
    print("\n".join(lines))
    if args.charts:
        drawn = charts.draw_calls(results, IMPLS, args.charts)
        print("\ncharts: " + ", ".join(drawn))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(header, rows, lines, pop, args.quick, instruction_table))
        print(f"\nwrote {args.markdown}")


def render_markdown(header, rows, lines, pop, quick, instruction_table):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    return (f"<!-- generated by bench/run.py{' --quick' if quick else ''} -->\n"
            f"Machine: {machine}; Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}.\n"
            f"Reads ran on {pop['jobs']:,} jobs and {pop['customers']:,} customer rows.\n\n"
            + "\n".join(out) + "\n\nInstructions per call (callgrind):\n\n" + "\n".join(instruction_table)
            + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
