"""Peak resident memory of a process tree on the controller, sampled from /proc (Linux).

The same method for every tool of bench/initial_load: while a tool runs, a thread reads every 0.2 s which
processes descend from the benchmark's own process (ansible-playbook and its workers and module processes,
the module processes of the modules path, pgcopydb, pg_dump, pg_restore, vacuumdb, and the tools those start;
the database servers are not descendants: the lab starts them detached) and their memory. It keeps the largest
sum of their proportional set sizes seen at one sample (`peak_tree_rss_mb`: what the controller needed at once;
PSS, from /proc/<pid>/smaps_rollup, splits a page shared by forked workers between them, so a tool that forks
many workers is not counted once per worker; VmRSS where smaps_rollup cannot be read) and the largest VmHWM of
any one process (`peak_process_rss_mb`, with its command name). A process living less than one interval can be
missed by the sum; its own high-water mark still counts when it is seen once.

The PSS sum is taken every `pss_interval` (1 s) only: reading smaps_rollup walks a process's pages, about 5 ms of
CPU per 100 MB of a process, so a tree of six 100 MB Python processes (the playbook path's) cost 29 ms a sample,
15 % of a core at 0.2 s, taken from the tool being timed and more from the tools with the largest trees. The
process list and each process's VmRSS and VmHWM (/proc/<pid>/status, cheap) are still read every 0.2 s. The memory
of these tools is flat over seconds; the per-process peak is the kernel's own (VmHWM), whatever the interval.
"""

from __future__ import annotations

import os
import threading
import time


def descendants(parents, root):
    """Every pid below `root` in {pid: ppid} (root itself excluded)."""
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def parse_stat(text):
    """(pid, command, ppid) from the text of /proc/<pid>/stat (the command may hold spaces and parentheses)."""
    pid, rest = text.split(" (", 1)
    comm, after = rest.rsplit(") ", 1)
    return int(pid), comm, int(after.split()[1])


def parse_status_kb(text, *keys):
    """{key: kB} of /proc/<pid>/status lines such as `VmRSS:   1234 kB` (0 when absent: a kernel thread)."""
    out = dict((k, 0) for k in keys)
    for line in text.splitlines():
        name, dummy, value = line.partition(":")
        if name in out:
            out[name] = int(value.split()[0])
    return out


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def processes():
    """{pid: (ppid, command)} of every process readable now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid, comm, ppid = parse_stat(_read("/proc/%s/stat" % entry))
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        out[pid] = (ppid, comm)
    return out


class PeakMemory:
    """with PeakMemory() as m: ...; m.result() -> dict(peak_tree_rss_mb, peak_process_rss_mb, peak_process,
    processes_seen, samples)."""

    def __init__(self, root=None, interval=0.2, pss_interval=1.0):
        self.root = root or os.getpid()
        self.interval = interval
        self.pss_interval = pss_interval
        self.pss_samples = 0
        self._next_pss = 0.0
        self.peak_tree_kb = 0
        self.peak_process_kb = 0
        self.peak_process = None
        self.seen = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self, now=None):
        """One look at the tree: every process's VmRSS and VmHWM; the PSS sum when pss_interval has passed."""
        now = time.monotonic() if now is None else now
        with_pss = now >= self._next_pss
        if with_pss:
            self._next_pss = now + self.pss_interval
        procs = processes()
        tree = descendants(dict((pid, v[0]) for pid, v in procs.items()), self.root)
        total = 0
        for pid in tree:
            try:
                kb = parse_status_kb(_read("/proc/%d/status" % pid), "VmRSS", "VmHWM")
            except OSError:
                continue
            if with_pss:
                try:
                    total += parse_status_kb(_read("/proc/%d/smaps_rollup" % pid), "Pss")["Pss"]
                except OSError:
                    total += kb["VmRSS"]
            self.seen.add((pid, procs[pid][1]))
            if kb["VmHWM"] > self.peak_process_kb:
                self.peak_process_kb, self.peak_process = kb["VmHWM"], procs[pid][1]
        if with_pss:
            self.peak_tree_kb = max(self.peak_tree_kb, total)
            self.pss_samples += 1
        self.samples += 1

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def result(self):
        return dict(peak_tree_rss_mb=round(self.peak_tree_kb / 1024.0, 1),
                    peak_process_rss_mb=round(self.peak_process_kb / 1024.0, 1), peak_process=self.peak_process,
                    processes_seen=len(self.seen), commands=sorted(set(seen[1] for seen in self.seen))[:20],
                    samples=self.samples, pss_samples=self.pss_samples, interval=self.interval,
                    pss_interval=self.pss_interval)
