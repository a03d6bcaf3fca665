"""Process monitor of the benchmarks: peak resident memory and CPU seconds of this process
and of its Ray workers, sampled from ``/proc``.

Peak memory is read from ``/proc/<pid>/status`` (``VmHWM``, reset through
``/proc/<pid>/clear_refs`` at the start of each run where the kernel allows it, else the
largest sampled ``VmRSS``); CPU seconds from ``/proc/<pid>/stat``. Ray workers are found
as descendants of this process (so only on a Ray cluster this process started) and told
apart by their process title (:data:`WORKER_ROLES`). Linux only.
"""
from __future__ import annotations

import os
import threading

#: Seconds between memory samples of the driver and the Ray workers.
MEMORY_POLL_S = 0.25
#: Process-title fragments of the Ray workers whose memory is tracked (Ray titles a
#: worker ``ray::<task or actor>``; Ray Data names map stages after their function/class).
WORKER_ROLES = {"actor": "Predictor", "decode": "decode_batch"}
#: Kernel clock ticks per second, the unit of the CPU times in ``/proc/<pid>/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int | str, key: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _cpu_seconds(pid: int | str) -> float | None:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat`` fields 14-15;
    None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "(comm)": field 3 is fields[0]
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def _reset_peak(pid: int) -> bool:
    """Reset a process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` value 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _descendants(root_pid: int) -> dict[int, str]:
    """``{pid: process title}`` of every live descendant of ``root_pid``."""
    parent, title = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after "(comm)"
        title[pid] = cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    out = {}
    for pid in parent:
        p = parent[pid]
        while p > 1 and p != root_pid:
            p = parent.get(p, 0)
        if p == root_pid and pid != root_pid:
            out[pid] = title[pid]
    return out


def _role(title: str) -> str | None:
    for role, fragment in WORKER_ROLES.items():  # "Predictor" first: a fused stage counts as the actor
        if fragment in title:
            return role
    return None


class PeakMemory:
    """Context manager: peak RSS (MiB) and CPU seconds of this process's Ray workers by role,
    and the driver's peak RSS.

    A background thread samples every :data:`MEMORY_POLL_S`; a worker's peak is its
    ``VmHWM`` (the kernel's own high-water mark, so short spikes between samples count),
    reset on entry for task workers that already exist (Ray reuses them); actors that
    exist on entry belong to an earlier run and are ignored. A worker's CPU seconds are
    counted from entry (or its start) to its last sample; a reused task worker also counts
    the other tasks it ran in between (the read and repartition tasks of the run).

    CPU seconds, unlike rates, barely depend on what else runs on the machine: the
    actor's CPU seconds per row bound the rate one actor reaches on free cores."""

    def __init__(self, poll_s: float = MEMORY_POLL_S):
        self.poll_s = poll_s
        self.pid = os.getpid()
        self.driver_kb = 0
        self.driver_start_kb = 0
        self.workers: dict[int, tuple[str, int]] = {}  # pid -> (role, peak kB)
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds at the last sample
        self.cpu_start: dict[int, float] = {}  # pid -> CPU seconds on entry (reused task workers)
        self.actor_titles: set[str] = set()
        self.before: set[int] = set()  # workers of earlier runs (e.g. an actor still shutting down)
        self.driver_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-peak-memory", daemon=True)

    def __enter__(self) -> "PeakMemory":
        self.driver_start_kb = _status_kb(self.pid, "VmRSS") or 0
        self.driver_reset = _reset_peak(self.pid)
        for pid, title in _descendants(self.pid).items():
            if _role(title) == "actor":
                self.before.add(pid)
            else:  # task workers are reused across runs: count this run's peak and CPU only
                _reset_peak(pid)
                self.cpu_start[pid] = _cpu_seconds(pid) or 0.0
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._sample()

    def _sample(self) -> None:
        key = "VmHWM" if self.driver_reset else "VmRSS"
        self.driver_kb = max(self.driver_kb, _status_kb(self.pid, key) or 0)
        for pid, title in _descendants(self.pid).items():
            if pid in self.before:
                continue
            role = _role(title) or (self.workers.get(pid, (None, 0))[0])
            if role is None:
                continue
            if role == "actor":
                self.actor_titles.add(title)
            hwm = _status_kb(pid, "VmHWM") or 0
            self.workers[pid] = (role, max(hwm, self.workers.get(pid, (role, 0))[1]))
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self.cpu[pid] = cpu

    def peak_mib(self, role: str) -> float | None:
        """Largest peak over the workers of ``role`` (None if none was seen)."""
        peaks = [kb for r, kb in self.workers.values() if r == role]
        return round(max(peaks) / 1024.0, 1) if peaks else None

    def count(self, role: str) -> int:
        return sum(1 for r, _ in self.workers.values() if r == role)

    def cpu_s(self, role: str) -> float:
        """CPU seconds the workers of ``role`` used during the block (0.0 if none was seen)."""
        return round(sum(self.cpu.get(pid, 0.0) - self.cpu_start.get(pid, 0.0)
                         for pid, (r, _) in self.workers.items() if r == role), 2)

    @property
    def driver_mib(self) -> float:
        return round(self.driver_kb / 1024.0, 1)
