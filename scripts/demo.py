"""`make demo`: the pipeline as far as it is built. Today: the GPU exporter on 8 simulated H100s,
a GPU falling off the bus (XID 79) and a GPU lost, and where to look.

    make demo                   # run the scenario, then tear everything down
    make demo DEMO_ARGS=--keep  # leave the exporter running for you to explore (Ctrl-C stops it)
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def post(url: str, body: str) -> str:
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def lines(text: str, *needles: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith("#") and all(n in ln for n in needles)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the stack running after the scenario")
    args = ap.parse_args()

    port = free_port(9835)
    base = f"http://127.0.0.1:{port}"
    exporter = subprocess.Popen([sys.executable, "-m", "exporters.gpu.cli", "--backend", "simulated",
                                 "--simulated-gpus", "8", "--listen", f"127.0.0.1:{port}"])
    try:
        for _ in range(200):
            try:
                get(f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        else:
            print("gpu-exporter did not start", file=sys.stderr)
            return 1
        print(f"\n== gpu-exporter (8 simulated H100) serving {base}/metrics")
        m = get(f"{base}/metrics")
        print(f"   {len(lines(m, ''))} series; e.g.")
        for ln in lines(m, 'gpu="3"', "gpu_temperature_celsius") + lines(m, 'gpu="3"', "gpu_power_usage_watts"):
            print("   ", ln)

        print('\n== inject XID 79 (GPU fell off the bus) on GPU 3: POST /simulate {"gpu":3,"fault":"xid","xid":79}')
        t0 = time.monotonic()
        post(f"{base}/simulate", '{"gpu": 3, "fault": "xid", "xid": 79}')
        while time.monotonic() - t0 < 10:
            hit = lines(get(f"{base}/metrics"), 'gpu="3"', 'xid="79"', "gpu_xid_errors_total")
            if hit and hit[0].endswith(" 1.0"):
                break
            time.sleep(0.01)
        print(f"   visible on /metrics after {time.monotonic() - t0:.3f} s (NVML event thread, no scrape cycle):")
        print("   ", hit[0])

        print('\n== GPU 5 lost: POST /simulate {"gpu":5,"fault":"lost"}')
        post(f"{base}/simulate", '{"gpu": 5, "fault": "lost"}')
        for ln in lines(get(f"{base}/metrics"), "gpu_accessible"):
            print("   ", ln)

        print(f"\n== look at: {base}/metrics   faults: {base}/simulate")
        if args.keep:
            print("   running; Ctrl-C to stop")
            exporter.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        exporter.terminate()
        exporter.wait(10)
        print("== stopped gpu-exporter")


if __name__ == "__main__":
    sys.exit(main())
