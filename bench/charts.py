"""The benchmark's charts, drawn with matplotlib as SVG files small and stable enough to commit
beside BENCHMARKS.md (no timestamps, a fixed id salt: the same figures give the same file)."""

import os

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "tms-bench"
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, readable diffs

# One colour per implementation, the same in every chart (the route's "library" is ctypes).
COLOURS = {"legacy": "#b2182b", "strong": "#ef8a62", "ctypes": "#2166ac", "native": "#67a9cf", "floor": "#999999",
           "baseline": "#999999", "library": "#2166ac"}


def save(fig, directory, name):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_calls(results, impls, directory):
    """One chart per sync setting: each case's median per call, one bar per implementation, on a
    log scale (legacy and the library differ by 10-300x). Returns the files written."""
    written = []
    for sync in ("NORMAL", "FULL"):
        cases = [case for (case, s) in results if s == sync]
        fig, ax = plt.subplots(figsize=(11, 4.2))
        width = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            xs, ys = [], []
            for i, case in enumerate(cases):
                value = results[(case, sync)].get(impl)
                if value:
                    xs.append(i + (k - (len(impls) - 1) / 2) * width)
                    ys.append(value)
            ax.bar(xs, ys, width, label=impl, color=COLOURS[impl])
        ax.set_yscale("log")
        ax.set_ylabel("median per call (µs, log scale)")
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c.replace(", ", ",\n") for c in cases], fontsize=8)
        ax.set_title(f"One call, synchronous={sync}: legacy, strong Python, libtms (ctypes, native) and the floor")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: bars reach the top
        ax.grid(axis="y", which="major", alpha=0.3)
        written.append(save(fig, directory, f"calls-{sync.lower()}.svg"))
    return written
