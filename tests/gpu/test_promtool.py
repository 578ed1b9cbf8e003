"""`promtool check metrics` on a real scrape: the exposition follows Prometheus conventions."""

from __future__ import annotations

import shutil
import subprocess

from .conftest import wait_for


def test_promtool_check_metrics_is_clean(exporter, sim):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs the Debian package prometheus"
    for gpu, fault in ((1, "overtemp"), (2, "power_brake"), (4, "row_remap_pending"), (5, "lost")):
        sim.inject(gpu, fault)
    sim.inject(3, "xid", 79)
    assert wait_for(lambda: b'xid="79"} 1.0' in exporter.exposition())
    body = exporter.exposition()
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout + r.stderr).decode()


def test_promtool_check_metrics_with_the_kernel_log_and_pod_attribution(tmp_path):
    from exporters.gpu.exporter import PodResourcesConfig
    from exporters.gpu.kernel_log import KernelLogConfig
    from exporters.gpu.simulated import SimulatedNVML
    from exporters.gpu.simulated_kmsg import SimulatedKernelLog

    from .conftest import make_exporter, one, parse
    from .kubelet import FakeKubelet, pod

    kubelet = FakeKubelet(tmp_path / "kubelet.sock", allocatable=[("nvidia.com/gpu", ["GPU-x"])])
    kubelet.set_pods(pod("ml", "llm-0", {"server": [("nvidia.com/gpu", [SimulatedNVML(1).mig_uuid(0, 0)])]}))
    log = tmp_path / "kmsg"
    sim = SimulatedNVML(8, kernel_log=SimulatedKernelLog(log), mig={0: 1})
    exp = make_exporter(sim, kernel_log=KernelLogConfig(str(log), poll=0.05),
                        pod_resources=PodResourcesConfig(str(kubelet.socket), interval=0.1))
    try:
        assert wait_for(lambda: exp.kernel_log.up)
        sim.inject(3, "xid", 79)
        sim.inject_sxid(0, 24007)
        with log.open("a") as f:
            f.write("NVRM: Xid (PCI:0000:5d:00): 45, pid=1, name=x, Ch 00000001 caused by previous Xid 79\n"
                    "NVRM: Xid (PCI:nope\n")

        def ready():
            s = parse(exp.exposition().decode())
            return (one(s, "gpu_exporter_kernel_log_lines_total", result="malformed") == 1
                    and one(s, "gpu_exporter_pod_resources_up") == 1 and
                    one(s, "gpu_xid_errors_total", gpu="3", xid="79", source="nvml") == 1)
        assert wait_for(ready)
        body = exp.exposition()
        for name in (b"gpu_allocation_info{", b"gpu_nvswitch_sxid_errors_total{", b"gpu_xid_follow_on_errors_total{",
                     b'source="kernel"'):
            assert name in body, name
        r = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout + r.stderr).decode()
    finally:
        exp.stop()
        kubelet.stop()
