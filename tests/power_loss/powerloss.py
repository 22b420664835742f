"""The power-loss harness: build the crashvfs shim, run a writer under it, cut the power.

A round: run a writer process with LD_PRELOAD=crashvfs.so (it records the pre-image of every
unsynced write under SQLite, see crashvfs.c), kill it (the shim's CRASHVFS_CRASH_AT-th write or
sync, or SIGKILL from here), then `cut()`: revert what no sync made durable, as a power cut would
have lost it. The writer reports each acknowledged write on its stdout (a pipe: not on the
simulated device), so the checker knows what must have survived.

Cut modes:
  all   every unsynced write, truncation, file creation and deletion is undone, newest first;
  torn  the unsynced operations form a queue in the order they reached the files; a random prefix
        of it reached the disk and the rest did not, and the last operation that did is torn:
        each 512-byte sector of it is either new or old (past the old end of the file: zeros);
  files as torn, but each file on its own (the page cache writes files back independently): a
        random prefix of each file's unsynced operations reached the disk, its last one torn.

Used by tests/python/test_power_loss.py and bench/syncs.py; `python powerloss.py DIR MODE [SEED]` is
the same cut from the command line.
"""

import collections
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

REC = struct.Struct("<IIqqIIiI")
MAGIC = 0x43524153
WRITE, TRUNCATE, SYNC, CREATE, DELETE, DIRSYNC, SIZE = 1, 2, 3, 4, 5, 6, 7
SECTOR = 512


def build_shim(out_dir=None):
    """Compile crashvfs.c into a shared object (again only when the source is newer)."""
    out_dir = out_dir or os.path.join(ROOT, "target", "power_loss")
    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(HERE, "crashvfs.c")
    so = os.path.join(out_dir, "crashvfs.so")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        tmp = so + f".{os.getpid()}.tmp"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", tmp, src, "-lsqlite3"],
                       check=True)
        os.replace(tmp, so)
    return so


class Record:
    __slots__ = ("index", "type", "path", "offset", "old_size", "data", "pid", "amt")

    def __init__(self, index, type_, path, offset, old_size, data, pid, amt):
        self.index, self.type, self.path, self.offset = index, type_, path, offset
        self.old_size, self.data, self.pid, self.amt = old_size, data, pid, amt

    def __repr__(self):
        return f"<{self.type} {self.path} @{self.offset} old_size={self.old_size} data={len(self.data)} amt={self.amt}>"


def read_log(device):
    """Every complete record of DEVICE/undo.log, in order (a short tail is a call that never ran)."""
    path = os.path.join(device, "undo.log")
    if not os.path.exists(path):
        return []
    blob = open(path, "rb").read()
    out, pos = [], 0
    while pos + REC.size <= len(blob):
        magic, type_, offset, old_size, path_len, data_len, pid, amt = REC.unpack_from(blob, pos)
        if magic != MAGIC:
            raise ValueError(f"undo log damaged at byte {pos}")
        end = pos + REC.size + path_len + data_len
        if end > len(blob):
            break
        p = blob[pos + REC.size:pos + REC.size + path_len].decode()
        data = blob[pos + REC.size + path_len:end]
        out.append(Record(len(out), type_, p, offset, old_size, data, pid, amt))
        pos = end
    return out


def unsynced(records):
    """The records no later SYNC (of the same file) or DIRSYNC (of its directory) covers."""
    pending = []
    for r in records:
        if r.type == SYNC:
            pending = [p for p in pending if not (p.path == r.path and p.type in (WRITE, TRUNCATE, SIZE))]
        elif r.type == DIRSYNC:
            pending = [p for p in pending if not (p.type in (CREATE, DELETE) and os.path.dirname(p.path) == r.path)]
        else:
            pending.append(r)
    return pending


def _set_size(path, size):
    if size is not None and size >= 0:
        os.truncate(path, size)


def _undo(r):
    if r.type in (WRITE, TRUNCATE, SIZE):
        if not os.path.exists(r.path):
            return
        with open(r.path, "r+b") as f:
            if r.data:
                f.seek(r.offset)
                f.write(r.data)
        _set_size(r.path, r.old_size)
    elif r.type == CREATE:
        if os.path.exists(r.path):
            os.unlink(r.path)
    elif r.type == DELETE:
        saved = r.data.decode()
        if os.path.exists(r.path):
            os.unlink(r.path)
        os.link(saved, r.path)


def _tear(r, rng):
    """Undo some 512-byte sectors of one write: the rest of it reached the disk."""
    if r.type != WRITE or r.amt <= 0 or not os.path.exists(r.path):
        return 0
    torn = 0
    with open(r.path, "r+b") as f:
        start = r.offset - r.offset % SECTOR
        for s in range(start, r.offset + r.amt, SECTOR):
            lo, hi = max(s, r.offset), min(s + SECTOR, r.offset + r.amt)
            if rng.random() < 0.5:
                continue
            torn += 1
            old = r.data[lo - r.offset:hi - r.offset] if lo - r.offset < len(r.data) else b""
            f.seek(lo)
            f.write(old + b"\0" * (hi - lo - len(old)))
    return torn


def cut(device, mode="all", rng=None, reached_disk=None):
    """Apply a power cut to the files DEVICE/undo.log describes; returns what it did.
    `reached_disk` (a function of a path) names files whose unsynced writes all reached the disk
    anyway (a deterministic version of the `files` mode, for reproducers)."""
    rng = rng or random.Random()
    records = read_log(device)
    pending = unsynced(records)
    if reached_disk:
        pending = [r for r in pending if not reached_disk(r.path)]
    torn_sectors = 0
    boundary = []
    if mode == "all":
        lost = pending
    elif mode == "torn":
        # One queue for every file: a prefix reached the disk, its last write torn.
        keep = rng.randint(0, len(pending))
        lost = pending[keep:]
        if keep > 0:
            boundary = [pending[keep - 1]]
    elif mode == "files":
        # The page cache writes each file back on its own: a prefix of each file's unsynced
        # operations reached the disk, independently of the other files, its last write torn.
        by_path = collections.defaultdict(list)
        for r in pending:
            by_path[r.path].append(r)
        lost, boundary = [], []
        for path in sorted(by_path):
            ops = by_path[path]
            keep = rng.randint(0, len(ops))
            lost.extend(ops[keep:])
            if keep > 0:
                boundary.append(ops[keep - 1])
        lost.sort(key=lambda r: r.index)
    else:
        raise ValueError(f"unknown cut mode {mode!r}")
    for r in reversed(lost):
        _undo(r)
    if mode != "all" and pending and len(lost) < len(pending):
        for r in boundary:
            torn_sectors += _tear(r, rng)
    os.replace(os.path.join(device, "undo.log"), os.path.join(device, "undo.log.applied"))
    return {"records": len(records), "unsynced": len(pending), "reverted": len(lost),
            "torn_sectors": torn_sectors, "syncs": sum(1 for r in records if r.type == SYNC)}


def ops_in_log(device, pid=None):
    """How many writes, truncations and syncs the shim counted (CRASHVFS_CRASH_AT's unit)."""
    return sum(1 for r in read_log(device) if r.type in (WRITE, TRUNCATE, SYNC) and (pid is None or r.pid == pid))


class Run:
    """One writer process under the shim; `acks` are the JSON lines it printed."""

    def __init__(self, returncode, acks, stderr, killed):
        self.returncode, self.acks, self.stderr, self.killed = returncode, acks, stderr, killed


def shim_env(shim, device, crash_at=None, counts=None, extra=None):
    env = dict(os.environ)
    env["LD_PRELOAD"] = shim
    if device:
        env["CRASHVFS_DIR"] = device
    if crash_at is not None:
        env["CRASHVFS_CRASH_AT"] = str(crash_at)
    if counts:
        env["CRASHVFS_COUNTS"] = counts
    env.update(extra or {})
    return env


def run_writer(argv, shim, device, crash_at=None, kill_after=None, timeout=120, env_extra=None):
    """Run ARGV under the shim recording into DEVICE; kill it at its CRASH_AT-th operation or
    after KILL_AFTER seconds (SIGKILL from here, at a random moment), whichever comes first."""
    os.makedirs(device, exist_ok=True)
    env = shim_env(shim, device, crash_at, extra=env_extra)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    killed = False
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
    out, err = proc.communicate(timeout=timeout)
    acks = []
    text = out.decode(errors="replace")
    for line in text.splitlines():
        try:
            acks.append(json.loads(line))
        except ValueError:
            pass  # the last line of a killed writer may be cut short: it was not acknowledged
    if proc.returncode == 0 and not acks and text.strip():
        acks.append(json.loads(text))  # the `tms` tool prints one indented JSON object at the end
    return Run(proc.returncode, acks, err.decode(errors="replace"), killed or proc.returncode in (-9, 137))


if __name__ == "__main__":
    device, mode = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
    print(json.dumps(cut(device, mode, random.Random(seed))))
