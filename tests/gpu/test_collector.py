"""The real collector code against the simulated NVML: every metric and every error path."""

from __future__ import annotations

import threading
import time

import pynvml
import pytest
from prometheus_client import generate_latest

from exporters.gpu.exposition import Renderer
from exporters.gpu.metrics import DEFAULT_XIDS, SPECS
from exporters.gpu.simulated import H100_MEMORY_TOTAL, SimulatedNVML

from .conftest import make_exporter, one, pick, scrape, wait_for

GPU3 = {"gpu": "3", "uuid": "GPU-5a1e0000-0000-4000-8000-000000000003"}

# Series a healthy H100 has: all but pre-Ampere page retirement and XID timestamps (no XID yet).
# The kernel log and pod attribution are off in the default test exporter.
OPTIONAL = {n for n in SPECS if n.startswith(("gpu_exporter_kernel_log", "gpu_nvswitch", "gpu_exporter_pod_resources"))}
OPTIONAL |= {"gpu_allocation_info", "gpu_xid_follow_on_errors_total"}
OPTIONAL |= {"gpu_fault_pending", "gpu_fault_pending_since_timestamp_seconds"}  # only while a fault is pending
OPTIONAL |= {"gpu_fabric_info"}  # only on GPUs of an NVLink fabric (tests/gpu/test_fabric.py)
HEALTHY = set(SPECS) - OPTIONAL - {"gpu_retired_pages_total", "gpu_retired_pages_pending",
                                   "gpu_xid_last_timestamp_seconds",
                                   "gpu_exporter_alert_pushes_total"}  # only with the fast path on


def test_healthy_gpu_exports_every_applicable_metric(exporter):
    series = scrape(exporter)
    assert {n for n, _ in series} >= HEALTHY
    for name in HEALTHY - {"gpu_exporter_nvml_up", "gpu_exporter_devices", "gpu_exporter_collect_duration_seconds",
                           "gpu_exporter_last_collect_success", "gpu_exporter_nvml_errors_total",
                           "gpu_exporter_build_info", "gpu_exporter_fault_state_persisted"}:
        per_gpu = {dict(lbl)["gpu"] for lbl in pick(series, name)}
        assert per_gpu == {str(i) for i in range(8)}, name


def test_values_are_in_base_units(exporter):
    s = scrape(exporter)
    assert one(s, "gpu_memory_total_bytes", **GPU3) == H100_MEMORY_TOTAL
    used, free = one(s, "gpu_memory_used_bytes", **GPU3), one(s, "gpu_memory_free_bytes", **GPU3)
    assert used + free + one(s, "gpu_memory_reserved_bytes", **GPU3) == H100_MEMORY_TOTAL
    assert one(s, "gpu_power_limit_watts", **GPU3) == 700.0
    assert 70 <= one(s, "gpu_power_usage_watts", **GPU3) <= 700
    assert 0 <= one(s, "gpu_utilization_ratio", **GPU3) <= 1
    assert 1e9 <= one(s, "gpu_sm_clock_hertz", **GPU3) <= 2e9
    assert one(s, "gpu_memory_clock_hertz", **GPU3) == 2.619e9
    assert one(s, "gpu_pcie_link_generation", **GPU3) == 5
    assert len(pick(s, "gpu_nvlink_errors_total", **GPU3)) == 18 * 4
    info = pick(s, "gpu_info", **GPU3)
    assert len(info) == 1
    labels = dict(next(iter(info)))
    assert labels["name"] == "NVIDIA H100 80GB HBM3" and labels["cuda_driver_version"] == "13.0"
    assert labels["pci_bus_id"] == "00000000:5D:00.0" and labels["mig_mode"] == "disabled"


def test_per_gpu_series_carry_only_gpu_and_uuid(exporter):
    for (name, labels) in scrape(exporter):
        if name.startswith("gpu_") and not name.startswith("gpu_exporter") and name != "gpu_info":
            keys = {k for k, _ in labels}
            assert {"gpu", "uuid"} <= keys and keys - {"gpu", "uuid"} <= {"link", "error", "cause", "reason", "xid",
                                                                                   "source"}


def test_energy_counter_is_monotonic(exporter, clock):
    seen = []
    for _ in range(20):
        seen.append(one(scrape(exporter), "gpu_energy_consumption_joules_total", **GPU3))
        clock.now += 37.0
    assert seen == sorted(seen) and seen[0] < seen[-1]


def test_not_supported_is_omitted_and_counted(exporter):
    s = scrape(exporter)
    assert not pick(s, "gpu_retired_pages_total")  # Hopper: NOT_SUPPORTED, never a fake 0
    assert not pick(s, "gpu_retired_pages_pending")
    assert not pick(s, "gpu_fabric_info")  # no NVLink fabric in the default simulation
    assert one(s, "gpu_exporter_nvml_errors_total", error="not_supported") == 8 * 4
    again = scrape(exporter)  # a capability gap is not re-probed on every scrape
    assert one(again, "gpu_exporter_nvml_errors_total", error="not_supported") == 8 * 4


def test_retired_pages_on_a_pre_ampere_gpu(clock):
    exp = make_exporter(SimulatedNVML(2, clock=clock, retired_pages_supported=True))
    s = scrape(exp)
    assert one(s, "gpu_retired_pages_total", gpu="1", cause="double_bit") == 2
    assert one(s, "gpu_retired_pages_pending", gpu="1") == 0


def test_xid_is_counted_through_the_event_set(exporter, sim):
    before = scrape(exporter)
    for code in DEFAULT_XIDS:
        assert one(before, "gpu_xid_errors_total", xid=str(code), **GPU3) == 0  # pre-created
    sim.inject(3, "xid", 79)
    sim.inject(3, "xid", 79)
    sim.inject(3, "xid", 13)
    assert wait_for(lambda: one(scrape(exporter), "gpu_xid_errors_total", xid="79", **GPU3) == 2)
    s = scrape(exporter)
    assert wait_for(lambda: one(scrape(exporter), "gpu_xid_errors_total", xid="13", **GPU3) == 1)
    assert one(s, "gpu_xid_errors_total", xid="79", gpu="2") == 0
    assert abs(one(s, "gpu_xid_last_timestamp_seconds", xid="79", **GPU3) - time.time()) < 60
    assert one(s, "gpu_recovery_action", **GPU3) == pynvml.NVML_GPU_RECOVERY_ACTION_NODE_REBOOT


def test_xid_code_outside_the_precreated_set_gets_its_own_series(exporter, sim):
    sim.inject(0, "xid", 999)
    assert wait_for(lambda: pick(scrape(exporter), "gpu_xid_errors_total", gpu="0", xid="999"))


def test_lost_gpu_reports_inaccessible_and_the_others_keep_reporting(exporter, sim):
    sim.inject(5, "lost")
    s = scrape(exporter)
    assert one(s, "gpu_accessible", gpu="5") == 0
    assert pick(s, "gpu_info", gpu="5"), "identity of a lost GPU is kept"
    assert not pick(s, "gpu_temperature_celsius", gpu="5"), "no fake values for a lost GPU"
    for i in set(range(8)) - {5}:
        assert one(s, "gpu_accessible", gpu=str(i)) == 1
        assert one(s, "gpu_temperature_celsius", gpu=str(i)) > 0
    assert one(s, "gpu_exporter_nvml_errors_total", error="gpu_is_lost") >= 1
    assert one(s, "gpu_exporter_last_collect_success") == 1
    sim.inject(5, "clear")
    assert one(scrape(exporter), "gpu_accessible", gpu="5") == 1


@pytest.mark.parametrize(
    ("fault", "metric", "labels", "value"),
    [
        ("overtemp", "gpu_temperature_celsius", {}, 95),
        ("overtemp", "gpu_clock_event_active", {"reason": "hw_thermal"}, 1),
        ("thermal_slowdown", "gpu_clock_event_active", {"reason": "sw_thermal"}, 1),
        ("power_brake", "gpu_clock_event_active", {"reason": "hw_power_brake"}, 1),
        ("ecc_uncorrected", "gpu_ecc_uncorrected_errors_total", {}, 1),
        ("row_remap_failure", "gpu_row_remap_failed", {}, 1),
        ("row_remap_pending", "gpu_row_remap_pending", {}, 1),
        ("nvlink_errors", "gpu_nvlink_errors_total", {"link": "0", "error": "crc_flit"}, 10),
    ],
)
def test_fault_shows_in_its_metric_and_clear_heals(exporter, sim, fault, metric, labels, value):
    assert one(scrape(exporter), metric, **GPU3, **labels) != value
    sim.inject(3, fault)
    assert one(scrape(exporter), metric, **GPU3, **labels) == value
    assert one(scrape(exporter), metric, gpu="2", **labels) != value
    sim.inject(3, "clear")
    after = one(scrape(exporter), metric, **GPU3, **labels)
    if metric.endswith("_total"):
        assert after == value, "counters never go down"
    else:
        assert after != value


def test_nvlink_counters_refresh_on_their_own_interval(sim):
    exp = make_exporter(sim, nvlink_interval=3600)
    assert one(scrape(exp), "gpu_nvlink_errors_total", link="0", error="crc_flit", **GPU3) == 0
    sim.inject(3, "nvlink_errors")
    assert one(scrape(exp), "gpu_nvlink_errors_total", link="0", error="crc_flit", **GPU3) == 0  # not yet due
    exp.sampler.nvlink_interval = 0
    assert one(scrape(exp), "gpu_nvlink_errors_total", link="0", error="crc_flit", **GPU3) == 10
    exp.sampler.nvlink_interval = 3600
    sim.inject(3, "lost")
    s = scrape(exp)
    assert not pick(s, "gpu_nvlink_errors_total", **GPU3), "a lost GPU keeps no cached NVLink values"
    assert len(pick(s, "gpu_nvlink_errors_total", gpu="2")) == 72


def test_shared_collection_within_min_interval(sim):
    exp = make_exporter(sim, min_interval=3600)
    assert one(scrape(exp), "gpu_accessible", gpu="5") == 1
    sim.inject(5, "lost")
    assert one(scrape(exp), "gpu_accessible", gpu="5") == 1, "opted in: the shared collection is reused"
    exp.sampler.min_interval = 0
    assert one(scrape(exp), "gpu_accessible", gpu="5") == 0


def test_init_failure_serves_self_metrics(sim):
    sim.fail_driver(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    exp = make_exporter(sim)
    s = scrape(exp)
    assert one(s, "gpu_exporter_nvml_up") == 0
    assert one(s, "gpu_exporter_devices") == 0
    assert one(s, "gpu_exporter_nvml_errors_total", error="library_not_found") >= 1
    assert not pick(s, "gpu_temperature_celsius")
    sim.fail_driver(None)  # the driver appears later (e.g. installed by the GPU operator)
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_nvml_up") == 1)
    assert one(scrape(exp), "gpu_exporter_devices") == 8


def test_driver_failure_reinitialises_and_xid_thread_reregisters(exporter, sim):
    gen = exporter.session.generation
    sim.fail_driver(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    s = scrape(exporter)
    assert one(s, "gpu_exporter_nvml_up") == 0
    assert pick(s, "gpu_info", gpu="3"), "inventory survives the outage"
    assert pick(s, "gpu_xid_errors_total", gpu="3"), "XID counts survive the outage"
    sim.fail_driver(None)
    assert wait_for(lambda: one(scrape(exporter), "gpu_exporter_nvml_up") == 1)
    assert exporter.session.generation > gen
    # The event thread registered on the new generation: a new XID is counted.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sim.inject(3, "xid", 48)
        if wait_for(lambda: one(scrape(exporter), "gpu_xid_errors_total", xid="48", **GPU3) >= 1, timeout=0.5):
            break
    assert one(scrape(exporter), "gpu_xid_errors_total", xid="48", **GPU3) >= 1


def test_hung_nvml_call_gives_a_bounded_scrape(clock):
    sim = SimulatedNVML(8, clock=clock)
    exp = make_exporter(sim, collect_timeout=0.3)
    sim.inject(3, "xid", 79)
    assert wait_for(lambda: one(scrape(exp), "gpu_xid_errors_total", xid="79", **GPU3) == 1)
    sim.hang = threading.Event()
    try:
        started = time.monotonic()
        results = []
        threads = [threading.Thread(target=lambda: results.append(scrape(exp))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(results) == 4 and time.monotonic() - started < 5  # bounded, not hung
        for s in results:
            assert one(s, "gpu_exporter_last_collect_success") == 0
            assert not pick(s, "gpu_temperature_celsius"), "no stale values passed off as fresh"
            assert one(s, "gpu_xid_errors_total", xid="79", **GPU3) == 1, "XID counts stay visible"
        assert one(results[0], "gpu_exporter_nvml_errors_total", error="collect_timeout") >= 1
    finally:
        sim.hang.set()
        sim.hang = None
    assert wait_for(lambda: one(scrape(exp), "gpu_exporter_last_collect_success") == 1)


def test_concurrent_scrapes_share_one_collection(clock):
    sim = SimulatedNVML(8, clock=clock)
    calls = []
    real = sim.nvmlDeviceGetPerformanceState

    def counting(handle):
        calls.append(1)
        time.sleep(0.02)
        return real(handle)

    sim.nvmlDeviceGetPerformanceState = counting
    exp = make_exporter(sim)
    calls.clear()
    threads = [threading.Thread(target=lambda: scrape(exp)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) < 6 * 8, "six overlapping scrapes must not run six collections"


def test_zero_gpus_is_a_failed_collection(clock):
    exp = make_exporter(SimulatedNVML(0, clock=clock))
    s = scrape(exp)
    assert one(s, "gpu_exporter_nvml_up") == 1
    assert one(s, "gpu_exporter_devices") == 0
    assert one(s, "gpu_exporter_last_collect_success") == 0


def test_fast_renderer_matches_prometheus_client(exporter, sim):
    sim.inject(5, "lost")
    exporter.sampler.min_interval = 3600  # both renderings see the same collection
    scrape(exporter)
    renderer = Renderer()
    for _ in range(2):  # the second time from the caches
        assert exporter.collector.render(renderer).encode() == generate_latest(exporter.registry)


def test_describe_does_not_touch_nvml(sim):
    from exporters.gpu.exporter import build

    build(sim)  # registering the collector must not call NVML (no init happened)
    assert sim._initialized == 0
