"""common.host: /proc/stat windows, the contention verdict and topology, from fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import host
from common.host import HostDelta, HostSnapshot, conditions, cores_in_use, host_info, read_proc_stat

HZ = os.sysconf("SC_CLK_TCK")


def _stat(user: int, nice: int, system: int, idle: int, iowait: int, irq: int, softirq: int, steal: int) -> str:
    """A /proc/stat text whose aggregate line has these tick counts (guest fields 50 each)."""
    return (
        f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 50 50\n"
        "cpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\nctxt 6789\n"
    )


def _snap(wall_s: float, process_cpu_s: float, text: str | None, children_cpu_s: float | None = 0.0) -> HostSnapshot:
    cpu = read_proc_stat(text) if text is not None else None
    return HostSnapshot(
        wall_s=wall_s,
        process_cpu_s=process_cpu_s,
        machine_busy_s=cpu.busy_s if cpu else None,
        machine_total_s=cpu.total_s if cpu else None,
        machine_steal_s=cpu.steal_s if cpu else None,
        load_avg_1m=None,
        children_cpu_s=children_cpu_s,
    )


def test_read_proc_stat_fields_and_guest_not_double_counted() -> None:
    cpu = read_proc_stat(_stat(100, 10, 20, 500, 30, 5, 5, 40))
    assert cpu.busy_s == pytest.approx((100 + 10 + 20 + 5 + 5) / HZ)
    assert cpu.total_s == pytest.approx((100 + 10 + 20 + 500 + 30 + 5 + 5 + 40) / HZ)  # guest excluded
    assert cpu.steal_s == pytest.approx(40 / HZ)


def test_read_proc_stat_old_kernel_and_garbage() -> None:
    cpu = read_proc_stat("cpu 10 0 10 80\n")  # pre-2.6: four fields
    assert cpu.busy_s == pytest.approx(20 / HZ) and cpu.steal_s == 0.0
    assert read_proc_stat("cpu x y z w\n") is None
    assert read_proc_stat("intr 1\n") is None
    assert read_proc_stat("") is None
    assert read_proc_stat(path=Path("/nonexistent/stat")) is None


def test_idle_machine_is_not_contended() -> None:
    # 10 s on 2 CPUs, 2 threads: this process used 19 s of CPU, the machine 19.5 s busy.
    start = _snap(0.0, 0.0, _stat(0, 0, 0, 0, 0, 0, 0, 0))
    end = _snap(10.0, 19.0, _stat(int(18.5 * HZ), 0, int(1.0 * HZ), int(0.5 * HZ), 0, 0, 0, 0))
    c = conditions(end - start, num_threads=2, num_cpus=2)
    assert c["process_cpu_share"] == pytest.approx(0.95)
    assert c["host_other_cpu_share"] == pytest.approx(0.5 / 20)
    assert c["host_steal_share"] == 0.0
    assert c["contended"] is False and c["contention_reason"] is None
    assert set(c) == {"process_cpu_share", "host_other_cpu_share", "host_steal_share", "contended", "contention_reason"}


def test_busy_machine_is_contended_with_reason() -> None:
    # Another job ate 8 of the 20 CPU-seconds: the process got only 10.
    start = _snap(0.0, 0.0, _stat(0, 0, 0, 0, 0, 0, 0, 0))
    end = _snap(10.0, 10.0, _stat(18 * HZ, 0, 0, 2 * HZ, 0, 0, 0, 0))
    c = conditions(end - start, num_threads=2, num_cpus=2)
    assert c["process_cpu_share"] == pytest.approx(0.5)
    assert c["host_other_cpu_share"] == pytest.approx(0.4)
    assert c["contended"] is True
    assert "other processes used 40%" in c["contention_reason"] and "\n" not in c["contention_reason"]
    # A looser threshold accepts it.
    assert conditions(end - start, 2, num_cpus=2, max_other_cpu_share=0.5)["contended"] is False


def test_children_count_as_own_work() -> None:
    # DataLoader workers used 6 s: not "other processes".
    start = _snap(0.0, 0.0, _stat(0, 0, 0, 0, 0, 0, 0, 0), children_cpu_s=1.0)
    end = _snap(10.0, 12.0, _stat(18 * HZ, 0, 0, 2 * HZ, 0, 0, 0, 0), children_cpu_s=7.0)
    c = conditions(end - start, 2, num_cpus=2)
    assert c["host_other_cpu_share"] == 0.0 and c["contended"] is False
    # Without the children reading they would count as other processes.
    end_unknown = _snap(10.0, 12.0, _stat(18 * HZ, 0, 0, 2 * HZ, 0, 0, 0, 0), children_cpu_s=None)
    assert conditions(end_unknown - start, 2, num_cpus=2)["host_other_cpu_share"] == pytest.approx(0.3)


def test_steal_is_contention() -> None:
    start = _snap(0.0, 0.0, _stat(0, 0, 0, 0, 0, 0, 0, 0))
    end = _snap(10.0, 16.0, _stat(16 * HZ, 0, 0, 0, 0, 0, 0, 4 * HZ))
    c = conditions(end - start, 2, num_cpus=2)
    assert c["host_other_cpu_share"] == 0.0
    assert c["host_steal_share"] == pytest.approx(0.2)
    assert c["contended"] is True and "hypervisor stole 20%" in c["contention_reason"]


def test_missing_proc_stat_gives_none_not_zero() -> None:
    start, end = _snap(0.0, 0.0, None), _snap(5.0, 9.0, None)
    d = end - start
    assert d.machine_busy_s is None and d.machine_steal_s is None
    c = conditions(d, 2, num_cpus=2)
    assert c["process_cpu_share"] == pytest.approx(0.9)
    assert c["host_other_cpu_share"] is None and c["host_steal_share"] is None
    assert c["contended"] is None and "unreadable" in c["contention_reason"]


def test_windows_add_up() -> None:
    zero = _stat(0, 0, 0, 0, 0, 0, 0, 0)
    w1 = _snap(5.0, 5.0, _stat(5 * HZ, 0, 0, 5 * HZ, 0, 0, 0, 0)) - _snap(0.0, 0.0, zero)
    w2 = _snap(15.0, 10.0, _stat(20 * HZ, 0, 0, 10 * HZ, 0, 0, 0, 0)) - _snap(10.0, 5.0, _stat(10 * HZ, 0, 0, 10 * HZ, 0, 0, 0, 0))
    total = w1 + w2
    assert total.wall_s == 10.0 and total.process_cpu_s == 10.0 and total.num_windows == 2
    assert total.machine_busy_s == pytest.approx(15.0)
    assert sum([w1, w2]) == total
    assert (HostDelta() + w1) == w1
    # One window without /proc/stat makes the sum unknown, not smaller.
    w3 = _snap(20.0, 11.0, None) - _snap(19.0, 10.0, None)
    assert (total + w3).machine_busy_s is None
    assert conditions(total, 2, num_cpus=2)["host_other_cpu_share"] == pytest.approx(5.0 / 20)


def test_empty_window() -> None:
    c = conditions(HostDelta(), 2, num_cpus=2)
    assert c["process_cpu_share"] is None and c["contended"] is None


def test_real_snapshot_on_this_host() -> None:
    a = host.snapshot()
    sum(i * i for i in range(200_000))
    b = host.snapshot()
    d = b - a
    assert d.wall_s > 0 and d.process_cpu_s >= 0
    if Path("/proc/stat").is_file():
        assert d.machine_total_s is not None and d.machine_total_s >= 0
        assert b.children_cpu_s is not None
    c = conditions(d, 1)
    assert c["contended"] in (True, False, None)


# ---------------------------------------------------------------- topology


def _topology(root: Path, cpus: dict[int, tuple[int, int]], siblings: bool = True) -> Path:
    """Fake /sys/devices/system/cpu: cpu -> (package, core)."""
    by_core: dict[tuple[int, int], list[int]] = {}
    for cpu, key in cpus.items():
        by_core.setdefault(key, []).append(cpu)
    for cpu, (package, core) in cpus.items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{package}\n")
        (topo / "core_id").write_text(f"{core}\n")
        if siblings:
            (topo / "thread_siblings_list").write_text(",".join(map(str, by_core[(package, core)])) + "\n")
    return root


def test_physical_cores_with_smt(tmp_path: Path) -> None:
    # 2 cores x 2 SMT threads: cpu0/cpu2 share core 0, cpu1/cpu3 share core 1.
    root = _topology(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)})
    info = host_info(sys_cpu=root, affinity=[0, 1, 2, 3])
    assert info["cpu_affinity"] == [0, 1, 2, 3] and info["num_physical_cores_in_affinity"] == 2
    assert cores_in_use(4, info) == 2 and cores_in_use(1, info) == 1
    # Affinity to the two siblings of one core: one core.
    assert host_info(sys_cpu=root, affinity=[0, 2])["num_physical_cores_in_affinity"] == 1


def test_physical_cores_fallback_to_package_core_pairs(tmp_path: Path) -> None:
    # Two packages with the same core ids are distinct cores.
    root = _topology(tmp_path, {0: (0, 0), 1: (1, 0)}, siblings=False)
    assert host.num_physical_cores([0, 1], root) == 2


def test_unreadable_topology_gives_none(tmp_path: Path) -> None:
    info = host_info(sys_cpu=tmp_path / "missing", affinity=[0, 1])
    assert info["num_physical_cores_in_affinity"] is None
    assert cores_in_use(2, info) is None


def test_real_host_info() -> None:
    info = host_info()
    assert info["num_cpus_online"] >= 1
    if hasattr(os, "sched_getaffinity"):
        assert info["cpu_affinity"] == sorted(os.sched_getaffinity(0))
