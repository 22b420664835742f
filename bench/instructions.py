"""Instructions per call, counted by valgrind's callgrind: unlike times, they hardly move on a
noisy machine, so a regression on the hot path shows as a number. Each figure is the difference
between a run of N2 and a run of N1 calls, divided by N2 - N1: start-up, schema creation and
imports cancel out. SQLite's own work is included (it is most of every write); I/O waits are not.

Run by `make bench` (bench/run.py); alone: `bench/instructions.py [--quick]`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NATIVE = os.path.join(ROOT, "target", "release", "examples", "bench")
LIB = os.environ.get("TMS_LIB", os.path.join(ROOT, "target", "release", "libtms.so"))

# A Python caller doing `calls` operations after one warm-up call, on a store in argv[1].
PYTHON_CALLER = r"""
import os, sys
sys.path[:0] = [{bindings!r}, {bench!r}]
what, d, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "strong-create":
    import tms
    tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db")).close()  # the schema
    from strong import StrongStore
    s = StrongStore(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), "NORMAL")
    call = lambda i: s.create_job("bench", 1, "Trans-Begin", [f"c{{i}}-a", f"c{{i}}-b", f"c{{i}}-c"])
else:
    import tms
    s = tms.Store(os.path.join(d, "jobs.db"), os.path.join(d, "audit.db"), synchronous="NORMAL")
    if what == "ctypes-create":
        call = lambda i: s.create_job("bench", 1, "Trans-Begin", [f"c{{i}}-a", f"c{{i}}-b", f"c{{i}}-c"])
    elif what == "ctypes-update":
        job = s.create_job("bench", 1, "Trans-Begin", ["c1"])["job_id"]
        call = lambda i: s.update_job(job, "SUCCESS", 200)
    elif what == "ctypes-log":
        call = lambda i: s.record_audit("bench", "Trans-Begin", ["c1", "c2", "c3"])
for i in range(calls + 1):
    call(i)
"""

CASES = [
    # (case, implementation, how to run it)
    ("create_job 3 IDs", "floor", ("native", "floor-create")),
    ("create_job 3 IDs", "native", ("native", "native-create")),
    ("create_job 3 IDs", "ctypes", ("python", "ctypes-create")),
    ("create_job 3 IDs", "strong", ("python", "strong-create")),
    ("update_job", "native", ("native", "native-update")),
    ("update_job", "ctypes", ("python", "ctypes-update")),
    ("log_action", "native", ("native", "native-log")),
    ("log_action", "ctypes", ("python", "ctypes-log")),
]


def instructions(kind, what, calls, base):
    d = tempfile.mkdtemp(dir=base)
    out = os.path.join(d, "callgrind.out")
    if kind == "native":
        cmd = [NATIVE, what, d, "NORMAL", str(calls), "3"]
    else:
        program = PYTHON_CALLER.format(bindings=os.path.join(ROOT, "bindings", "python"), bench=HERE)
        cmd = [sys.executable, "-c", program, what, d, str(calls)]
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                         capture_output=True, text=True, env={**os.environ, "TMS_LIB": LIB})
    if run.returncode != 0:
        raise RuntimeError(f"{what} under callgrind failed:\n{run.stderr[-2000:]}")
    for line in run.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip().replace(",", ""))
    raise RuntimeError(f"no instruction count in callgrind's output for {what}")


def measure(quick=False):
    """{(case, implementation): instructions per call}."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed for instruction counts (apt-get install valgrind)")
    n1, n2 = (50, 150) if quick else (200, 1200)
    base = tempfile.mkdtemp(prefix="tms-instr-")
    try:
        return {(case, impl): (instructions(kind, what, n2, base) - instructions(kind, what, n1, base)) / (n2 - n1)
                for case, impl, (kind, what) in CASES}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def table(counts):
    impls = ["strong", "ctypes", "native", "floor"]
    cases = list(dict.fromkeys(case for case, _ in counts))
    lines = ["| case (NORMAL) | " + " | ".join(impls) + " | ctypes/floor | native/floor |",
             "|---|" + "---|" * (len(impls) + 2)]
    for case in cases:
        cells = [f"{counts[(case, i)] / 1000:.1f}k" if (case, i) in counts else "-" for i in impls]
        floor = counts.get((case, "floor"))
        ratios = [f"{counts[(case, i)] / floor:.2f}x" if floor else "-" for i in ("ctypes", "native")]
        lines.append(f"| {case} | " + " | ".join(cells + ratios) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print("instructions per call (callgrind)\n")
    print("\n".join(table(measure(args.quick))))


if __name__ == "__main__":
    main()
