"""Start and stop a local control plane on 127.0.0.1 with free ports.

Tier `api`: etcd and kube-apiserver (token auth, RBAC, TLS from a throw-away CA); enough for
object semantics (cordon, taints, Leases, CRDs). Tier `cluster`: plus kube-controller-manager,
kube-scheduler and kwok, for Deployments, PDB status, scheduling and Running pods.
Simulated node and pod IPs are data only: nothing here dials them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from tests.k8s import bins
from tests.k8s.pki import write_pki

STAGES = Path(__file__).with_name("kwok-stages.yaml")
KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_identity(pid: int) -> str | None:
    """Boot id and start time of `pid`: tells the process we started from a later one that reuses its pid
    (after a reboot or a long time), so a stale state file never makes us signal someone else's process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
        return None
    return f"{boot}:{fields[19]}"  # field 22 of stat: start time in clock ticks since boot


@dataclass
class Proc:
    name: str
    pid: int
    log: str
    popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    identity: str | None = None

    def __post_init__(self) -> None:
        if self.identity is None and self.popen is not None:
            self.identity = process_identity(self.pid)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        now = process_identity(self.pid)
        if now is None:
            return False
        if self.identity is None:  # a state file written before identities were kept: go by the program's name
            try:
                argv0 = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                return False
            return Path(argv0).name == self.name
        return now == self.identity

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if not self.alive():
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.popen is not None:
                    try:
                        self.popen.wait(0.1)
                        return
                    except subprocess.TimeoutExpired:
                        continue
                if not self.alive():
                    return
                time.sleep(0.1)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    workdir: Path
    tier: str
    server: str
    token: str
    kubeconfig: Path
    ca: Path
    procs: list[Proc] = field(default_factory=list)
    etcd: str = ""  # etcd's client URL (for tests that compact it); not kept in state.json

    def api_client(self):
        """An ApiClient of the official `kubernetes` package, as the admin."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(bins.binary("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, input=input, timeout=120)

    def wait_crds_established(self, timeout: float = 60.0) -> None:
        """Every CRD Established. `kubectl wait --all` fails outright on a CRD created a moment ago whose
        status has no conditions yet (".status.conditions accessor error"), so poll the CRDs' status."""
        def established() -> bool:
            crds = json.loads(self.kubectl("get", "crd", "-o", "json").stdout)["items"]
            return all(any(c.get("type") == "Established" and c.get("status") == "True"
                           for c in (crd.get("status") or {}).get("conditions") or []) for crd in crds)
        wait_until(established, timeout, what="CRDs Established")

    def stop(self) -> None:
        for proc in reversed(self.procs):  # kwok, scheduler, KCM, apiserver, etcd
            proc.stop()
        state = self.workdir / "state.json"
        state.unlink(missing_ok=True)

    def save(self) -> None:
        state = {"tier": self.tier, "server": self.server, "token": self.token,
                 "kubeconfig": str(self.kubeconfig), "ca": str(self.ca),
                 "procs": [{"name": p.name, "pid": p.pid, "log": p.log, "identity": p.identity} for p in self.procs]}
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> ControlPlane | None:
        try:
            state = json.loads((workdir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return cls(workdir, state["tier"], state["server"], state["token"], Path(state["kubeconfig"]),
                   Path(state["ca"]), [Proc(**p) for p in state["procs"]])


def _wait(what: str, ready: Callable[[], bool], proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ControlPlaneError(f"{proc.name} exited while starting; log {proc.log}:\n{proc.tail()}")
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise ControlPlaneError(f"{what} not ready after {timeout:.0f} s; log {proc.log}:\n{proc.tail()}")


def _spawn(workdir: Path, name: str, args: list[str]) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=workdir)
    return Proc(name, popen.pid, str(log), popen)


def _healthz(url: str) -> bool:
    with warnings.catch_warnings():  # loopback components with self-signed serving certs
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return requests.get(url, verify=False, timeout=2).text.strip() == "ok"


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str = "admin") -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "vigil-local",
        "clusters": [{"name": "vigil-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "vigil-local", "context": {"cluster": "vigil-local", "user": user}}],
    }, indent=2))
    path.chmod(0o600)


def start(workdir: Path, tier: str = "cluster", *, timeout: float = 90.0,
          kubeconfig: Path | None = None, apiserver_flags: tuple[str, ...] = ()) -> ControlPlane:
    """Start the tier's components; on any failure, stop what was started and raise."""
    if tier not in ("api", "cluster"):
        raise ValueError(f"tier must be 'api' or 'cluster', not {tier!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    binaries = {name: str(bins.binary(name)) for name in
                (("etcd", "kube-apiserver", "kubectl") if tier == "api" else bins.BINARIES)}
    pki = write_pki(workdir / "pki")
    token = secrets.token_hex(24)
    (workdir / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
    (workdir / "tokens.csv").chmod(0o600)
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    kubeconfig = kubeconfig or workdir / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, pki["ca.crt"], token)
    cp = ControlPlane(workdir, tier, server, token, kubeconfig, pki["ca.crt"])
    try:
        etcd_port, peer_port = free_port(), free_port()
        etcd = _spawn(workdir, "etcd", [
            binaries["etcd"], "--data-dir", str(workdir / "etcd-data"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync", "--auto-compaction-retention=1", "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ])
        cp.procs.append(etcd)
        cp.etcd = f"http://127.0.0.1:{etcd_port}"
        _wait("etcd", lambda: requests.get(f"http://127.0.0.1:{etcd_port}/health", timeout=2).json()["health"]
              == "true", etcd, timeout)

        apiserver_args = [
            binaries["kube-apiserver"], f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={pki['server.crt']}", f"--tls-private-key-file={pki['server.key']}",
            f"--client-ca-file={pki['ca.crt']}", f"--token-auth-file={workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa.pub']}", f"--service-account-signing-key-file={pki['sa.key']}",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
            "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false", "--profiling=false",
            f"--cert-dir={workdir / 'apiserver-certs'}", "--v=1",
        ]
        if tier == "api":  # no KCM creates the `default` ServiceAccount
            apiserver_args.append("--disable-admission-plugins=ServiceAccount")
        apiserver_args.extend(apiserver_flags)
        apiserver = _spawn(workdir, "kube-apiserver", apiserver_args)
        cp.procs.append(apiserver)
        headers = {"Authorization": f"Bearer {token}"}
        _wait("kube-apiserver", lambda: requests.get(f"{server}/readyz", headers=headers, verify=str(pki["ca.crt"]),
                                                     timeout=2).text == "ok", apiserver, timeout)

        if tier == "cluster":
            kcm_port, sched_port, kwok_port = free_port(), free_port(), free_port()
            delegated = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                         f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                         "--bind-address=127.0.0.1",
                         "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"]
            kcm = _spawn(workdir, "kube-controller-manager", [
                binaries["kube-controller-manager"], *delegated, f"--secure-port={kcm_port}",
                f"--service-account-private-key-file={pki['sa.key']}", f"--root-ca-file={pki['ca.crt']}",
                "--use-service-account-credentials=false", "--kube-api-qps=100", "--kube-api-burst=200",
                "--v=1",
            ])
            cp.procs.append(kcm)
            sched = _spawn(workdir, "kube-scheduler", [
                binaries["kube-scheduler"], *delegated, f"--secure-port={sched_port}", "--v=1",
            ])
            cp.procs.append(sched)
            kwok = _spawn(workdir, "kwok", [
                binaries["kwok"], f"--kubeconfig={kubeconfig}", f"--config={STAGES}",
                "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1", f"--server-address=127.0.0.1:{kwok_port}", "--cidr=10.244.0.0/16",
                "--node-lease-duration-seconds=40",
            ])
            cp.procs.append(kwok)
            _wait("kube-controller-manager", lambda: _healthz(f"https://127.0.0.1:{kcm_port}/healthz"), kcm, timeout)
            _wait("kube-scheduler", lambda: _healthz(f"https://127.0.0.1:{sched_port}/healthz"), sched, timeout)
            _wait("kwok", lambda: requests.get(f"http://127.0.0.1:{kwok_port}/healthz", timeout=2).ok, kwok, timeout)

        cp.kubectl("apply", "--server-side", "-f", str(bins.gateway_api_crds()))
        cp.wait_crds_established()
    except BaseException:
        cp.stop()
        raise
    cp.save()
    return cp


def gpu_node(name: str, *, gpus: int = 8, zone: str = "zone-a", pool: str = "gpu-pool-a") -> dict:
    """A kwok-managed node shaped like an 8-GPU H100 server."""
    capacity = {"cpu": "192", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": str(gpus),
                "ephemeral-storage": "10Ti"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "annotations": dict(KWOK_ANNOTATION),
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "type": "kwok", "topology.kubernetes.io/zone": zone, "vigil.io/pool": pool,
                       "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                       "node.kubernetes.io/instance-type": "p5.48xlarge"},
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def add_gpu_nodes(api_client, names: list[str], *, exist_ok: bool = False, **kw) -> None:
    """Create kwok GPU nodes; with `exist_ok`, a node that is already there is left as it is."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    for i, name in enumerate(names):
        zone = kw.get("zone") or ("zone-a" if i % 2 == 0 else "zone-b")
        pool = kw.get("pool") or ("gpu-pool-a" if i % 2 == 0 else "gpu-pool-b")
        try:
            core.create_node(gpu_node(name, gpus=kw.get("gpus", 8), zone=zone, pool=pool))
        except client.ApiException as exc:
            if not (exist_ok and exc.status == 409):
                raise


def wait_until(pred: Callable[[], object], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or pred}")
        time.sleep(interval)
