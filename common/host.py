"""Host conditions over a measured window: was this process alone on the CPUs?

A window is two :class:`HostSnapshot` s; their difference is a :class:`HostDelta` (deltas add up
over several windows); :func:`conditions` turns a delta into the ``result.json`` / profile keys
``process_cpu_share``, ``host_other_cpu_share``, ``host_steal_share``, ``contended`` and
``contention_reason``.

Why CPU time and not load averages: the kernel's 1-minute load average is an exponentially
damped average of the run queue (``kernel/sched/loadavg.c``), so it stays high for about a
minute after a previous job ends and would flag every back-to-back sweep job. The CPU time that
other processes used *during the window*, from the aggregate ``cpu`` line of ``/proc/stat``
(proc(5)), is the criterion; load averages are recorded only as information.

Linux first: where ``/proc`` or ``/sys`` cannot be read, the fields are None (never 0), and
``contended`` is None. No torch here (``common/`` is torch-free). Every reader takes an optional
text or path argument so tests can feed fixtures.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "PROC_STAT",
    "SYS_CPU",
    "CpuTimes",
    "HostSnapshot",
    "HostDelta",
    "read_proc_stat",
    "read_descendants_cpu_s",
    "snapshot",
    "delta",
    "conditions",
    "num_cpus_online",
    "host_info",
    "num_physical_cores",
    "cores_in_use",
]

PROC_STAT = Path("/proc/stat")
PROC_ROOT = Path("/proc")
SYS_CPU = Path("/sys/devices/system/cpu")

#: Default thresholds of :func:`conditions` (shares of the host's CPU time over the window).
MAX_OTHER_CPU_SHARE = 0.10
MAX_STEAL_SHARE = 0.10


def _clock_ticks_per_s() -> Optional[float]:
    """USER_HZ, the unit of /proc/stat and /proc/<pid>/stat times (proc(5)); None off POSIX."""
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return None


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text()
    except OSError:
        return None


# ---------------------------------------------------------------- /proc/stat


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate ``cpu`` line of /proc/stat, summed over all online CPUs, in seconds.

    Attributes:
        busy_s: user + nice + system + irq + softirq: time the CPUs ran something in this
            (virtual) machine. Excludes idle, iowait and steal (steal is reported on its own).
        total_s: user + nice + system + idle + iowait + irq + softirq + steal. guest and
            guest_nice are left out: the kernel already counts them in user and nice (proc(5)).
        steal_s: Time a hypervisor ran other guests while this one wanted the CPU (VMs).
    """

    busy_s: float
    total_s: float
    steal_s: float


def read_proc_stat(text: Optional[str] = None, path: Path = PROC_STAT) -> Optional[CpuTimes]:
    """Parse the aggregate ``cpu`` line of /proc/stat.

    Args:
        text: The file's contents (tests); read from ``path`` when None.
        path: Where to read it.

    Returns:
        The times in seconds, or None when the file or the line is missing or malformed.
    """
    if text is None:
        text = _read_text(path)
    hz = _clock_ticks_per_s()
    if not text or not hz:
        return None
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] != "cpu":
            continue
        try:
            # proc(5): user nice system idle iowait irq softirq steal guest guest_nice (USER_HZ);
            # kernels before 2.6.11 lack steal, before 2.6.0 lack iowait/irq/softirq.
            ticks = [int(x) for x in parts[1:9]]
        except ValueError:
            return None
        if len(ticks) < 4:
            return None
        ticks += [0] * (8 - len(ticks))
        user, nice, system, idle, iowait, irq, softirq, steal = ticks
        busy = user + nice + system + irq + softirq
        total = busy + idle + iowait + steal
        return CpuTimes(busy_s=busy / hz, total_s=total / hz, steal_s=steal / hz)
    return None


def read_descendants_cpu_s(pid: Optional[int] = None, proc_root: Path = PROC_ROOT) -> Optional[float]:
    """User + system CPU time of the live descendants of ``pid`` (e.g. DataLoader workers).

    Each live descendant's own time (``utime``, ``stime``) plus that of its reaped children
    (``cutime``, ``cstime``), from /proc/<pid>/stat (proc(5), fields 14-17, in USER_HZ). The
    reaped children of ``pid`` itself are not included: :func:`snapshot` adds them from
    :func:`os.times` when ``pid`` is this process.

    Returns:
        Seconds, or None when /proc cannot be read.
    """
    pid = os.getpid() if pid is None else pid
    hz = _clock_ticks_per_s()
    try:
        entries = [e for e in os.listdir(proc_root) if e.isdigit()]
    except OSError:
        return None
    if not hz:
        return None
    parent: dict[int, int] = {}
    cpu_ticks: dict[int, int] = {}
    for entry in entries:
        text = _read_text(proc_root / entry / "stat")
        if not text or ")" not in text:
            continue  # the process ended while we listed /proc
        # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
        rest = text.rsplit(")", 1)[1].split()
        try:
            parent[int(entry)] = int(rest[1])  # field 4: ppid
            cpu_ticks[int(entry)] = sum(int(x) for x in rest[11:15])  # fields 14-17
        except (IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for child, ppid in parent.items():
        children.setdefault(ppid, []).append(child)
    total, stack = 0, list(children.get(pid, []))
    while stack:
        p = stack.pop()
        total += cpu_ticks.get(p, 0)
        stack.extend(children.get(p, []))
    return total / hz


# ---------------------------------------------------------------- snapshots and windows


@dataclass(frozen=True)
class HostSnapshot:
    """Host counters at one instant; subtract two to get a :class:`HostDelta`.

    Attributes:
        wall_s: :func:`time.perf_counter`.
        process_cpu_s: This process's user + system CPU time, all threads
            (:func:`time.process_time`).
        machine_busy_s: /proc/stat busy time of all CPUs (see :class:`CpuTimes`); None where
            unreadable.
        machine_total_s: /proc/stat total time of all CPUs; None where unreadable.
        machine_steal_s: /proc/stat steal time of all CPUs; None where unreadable.
        load_avg_1m: :func:`os.getloadavg` ``[0]``; None where unavailable. Information only.
        children_cpu_s: CPU time of this process's children, live (/proc) and reaped
            (:func:`os.times`); None where /proc is unreadable. It counts as the run's own work,
            not as another process's.
    """

    wall_s: float
    process_cpu_s: float
    machine_busy_s: Optional[float]
    machine_total_s: Optional[float]
    machine_steal_s: Optional[float]
    load_avg_1m: Optional[float]
    children_cpu_s: Optional[float] = None

    def __sub__(self, start: "HostSnapshot") -> "HostDelta":
        """``end - start``: the window from ``start`` to this snapshot."""
        if not isinstance(start, HostSnapshot):
            return NotImplemented
        return delta(start, self)


def _load_avg_1m() -> Optional[float]:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def snapshot(*, proc_stat_text: Optional[str] = None, include_children: bool = True) -> HostSnapshot:
    """Read the host counters now.

    Args:
        proc_stat_text: /proc/stat contents to use instead of the file (tests).
        include_children: Also sum the CPU time of child processes (scans /proc; a few ms).
            Off, ``children_cpu_s`` is None and children count as other processes.
    """
    cpu = read_proc_stat(proc_stat_text)
    children = None
    if include_children:
        live = read_descendants_cpu_s()
        if live is not None:
            t = os.times()
            children = live + t.children_user + t.children_system
    return HostSnapshot(
        wall_s=time.perf_counter(),
        process_cpu_s=time.process_time(),
        machine_busy_s=cpu.busy_s if cpu else None,
        machine_total_s=cpu.total_s if cpu else None,
        machine_steal_s=cpu.steal_s if cpu else None,
        load_avg_1m=_load_avg_1m(),
        children_cpu_s=children,
    )


def _sub(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _add(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a + b


@dataclass
class HostDelta:
    """Counter deltas summed over one or more windows (``a + b`` adds windows).

    Attributes are the :class:`HostSnapshot` counters' differences, in seconds; a counter that
    is None in any window is None in the sum. ``num_windows`` counts the windows summed.
    """

    wall_s: float = 0.0
    process_cpu_s: float = 0.0
    machine_busy_s: Optional[float] = 0.0
    machine_total_s: Optional[float] = 0.0
    machine_steal_s: Optional[float] = 0.0
    children_cpu_s: Optional[float] = 0.0
    num_windows: int = 0

    def __add__(self, other: "HostDelta") -> "HostDelta":
        if not isinstance(other, HostDelta):
            return NotImplemented
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = a + b if f.name in ("wall_s", "process_cpu_s", "num_windows") else _add(a, b)
        return HostDelta(**values)

    def __radd__(self, other: Any) -> "HostDelta":
        """So that ``sum(deltas)`` works (it starts from 0)."""
        if other == 0:
            return self
        return NotImplemented


def delta(start: HostSnapshot, end: HostSnapshot) -> HostDelta:
    """The window from ``start`` to ``end`` as a :class:`HostDelta`."""
    return HostDelta(
        wall_s=end.wall_s - start.wall_s,
        process_cpu_s=end.process_cpu_s - start.process_cpu_s,
        machine_busy_s=_sub(end.machine_busy_s, start.machine_busy_s),
        machine_total_s=_sub(end.machine_total_s, start.machine_total_s),
        machine_steal_s=_sub(end.machine_steal_s, start.machine_steal_s),
        children_cpu_s=_sub(end.children_cpu_s, start.children_cpu_s),
        num_windows=1,
    )


# ---------------------------------------------------------------- the verdict


def num_cpus_online() -> Optional[int]:
    """Online logical CPUs (``sysconf(_SC_NPROCESSORS_ONLN)``), the CPUs /proc/stat's ``cpu`` line sums."""
    try:
        n = os.sysconf("SC_NPROCESSORS_ONLN")
        if n and n > 0:
            return int(n)
    except (AttributeError, ValueError, OSError):
        pass
    return os.cpu_count()


def conditions(
    delta: HostDelta,
    num_threads: int,
    *,
    max_other_cpu_share: float = MAX_OTHER_CPU_SHARE,
    max_steal_share: float = MAX_STEAL_SHARE,
    num_cpus: Optional[int] = None,
) -> dict[str, Any]:
    """Was the host busy with other work during the window(s)?

    Args:
        delta: The measured window(s).
        num_threads: Compute threads this process used (e.g. ``torch.get_num_threads()``).
        max_other_cpu_share: ``contended`` when other processes used more than this share of the
            host's CPU time.
        max_steal_share: ``contended`` when the hypervisor stole more than this share.
        num_cpus: Online CPUs (default: :func:`num_cpus_online`).

    Returns:
        ``process_cpu_share``: process CPU s / (wall s x num_threads); below 1 means the
        threads waited (for the CPU, memory or I/O).
        ``host_other_cpu_share``: max(0, machine busy - process CPU - children CPU) /
        (wall s x online CPUs).
        ``host_steal_share``: steal / (wall s x online CPUs).
        ``contended``: True if either share is over its threshold; None when /proc/stat could
        not be read or the window is empty.
        ``contention_reason``: one line, or None when not contended.
        Unknowns are None, never 0. /proc/stat ticks are 10 ms (USER_HZ=100), so windows under
        a second or so give coarse shares.
    """
    wall = delta.wall_s
    cpus = num_cpus if num_cpus is not None else num_cpus_online()
    process_share = delta.process_cpu_s / (wall * num_threads) if wall > 0 and num_threads and num_threads > 0 else None
    other_share = steal_share = None
    if wall > 0 and cpus and delta.machine_busy_s is not None:
        own = delta.process_cpu_s + (delta.children_cpu_s or 0.0)
        other_share = max(0.0, delta.machine_busy_s - own) / (wall * cpus)
    if wall > 0 and cpus and delta.machine_steal_s is not None:
        steal_share = max(0.0, delta.machine_steal_s) / (wall * cpus)

    reasons = []
    if other_share is not None and other_share > max_other_cpu_share:
        reasons.append(
            f"other processes used {other_share:.0%} of the host's {cpus} CPUs "
            f"(threshold {max_other_cpu_share:.0%})"
        )
    if steal_share is not None and steal_share > max_steal_share:
        reasons.append(f"the hypervisor stole {steal_share:.0%} of CPU time (threshold {max_steal_share:.0%})")
    if other_share is None:
        contended, reason = None, "host CPU use unknown: /proc/stat unreadable or empty window"
    else:
        contended, reason = bool(reasons), ("; ".join(reasons) or None)
    return {
        "process_cpu_share": process_share,
        "host_other_cpu_share": other_share,
        "host_steal_share": steal_share,
        "contended": contended,
        "contention_reason": reason,
    }


# ---------------------------------------------------------------- topology


def _cpu_affinity() -> Optional[list[int]]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def num_physical_cores(cpus: list[int], sys_cpu: Path = SYS_CPU) -> Optional[int]:
    """Distinct physical cores among logical ``cpus``, from sysfs topology.

    A core is its ``thread_siblings_list`` (the logical CPUs sharing it; Linux
    Documentation/admin-guide/cputopology.rst); where that file is missing, the
    (``physical_package_id``, ``core_id``) pair. None if any CPU's topology is unreadable.
    """
    cores: set[Any] = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        siblings = _read_text(topo / "thread_siblings_list")
        if siblings is not None and siblings.strip():
            cores.add(siblings.strip())
            continue
        package, core = _read_text(topo / "physical_package_id"), _read_text(topo / "core_id")
        if package is None or core is None:
            return None
        cores.add((package.strip(), core.strip()))
    return len(cores) if cores else None


def host_info(*, sys_cpu: Path = SYS_CPU, affinity: Optional[list[int]] = None) -> dict[str, Any]:
    """What this process may run on.

    Returns:
        ``num_cpus_online``: online logical CPUs.
        ``cpu_affinity``: sorted logical CPUs this process may run on
        (:func:`os.sched_getaffinity`); None where unavailable.
        ``num_physical_cores_in_affinity``: distinct physical cores among them
        (:func:`num_physical_cores`); None where unreadable.
    """
    cpus = affinity if affinity is not None else _cpu_affinity()
    return {
        "num_cpus_online": num_cpus_online(),
        "cpu_affinity": cpus,
        "num_physical_cores_in_affinity": num_physical_cores(cpus, sys_cpu) if cpus else None,
    }


def cores_in_use(num_threads: int, info: Optional[dict[str, Any]] = None) -> Optional[int]:
    """Physical cores ``num_threads`` compute threads can occupy: min(threads, physical cores).

    SMT siblings share one core's FMA units, so a second thread on a core adds no peak FLOP/s.
    None when the physical cores are unknown (never a guess from logical CPUs).
    """
    info = host_info() if info is None else info
    cores = info.get("num_physical_cores_in_affinity")
    if cores is None or num_threads is None or num_threads < 1:
        return None
    return min(int(num_threads), int(cores))
