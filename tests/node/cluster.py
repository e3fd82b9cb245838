"""A real single-node Kubernetes on this machine, inside namespaces the harness creates.

`NodeCluster` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (its
own config, root, state and socket), runc, the CNI bridge plugin, kubelet and kube-proxy. The
Kubernetes binaries come from `scripts/kube/build` (Debian's `kubernetes` source package, v1.20,
with the reflect2 fix), the rest from Debian's packages. Everything runs in one network namespace
and one private mount namespace, held by a `sleep` process the harness starts:

- networking: a veth pair (`node0`, the node's address 10.201.0.1, and `node1`) and the pod bridge
  `mr0` (10.244.0.0/24) exist only there; kube-proxy's rules and every pod's veth live and die
  with it. Nothing routes or NATs to the machine's own network. The API server is reached from
  the machine through `scripts/node/forward.py` (loopback port -> 10.201.0.1:6443).
- mounts: tmpfs over /run (containerd's shim sockets, runc state, pod netns pins), /var/log
  (kubelet's pod logs) and /var/lib/cni (CNI cache); /etc/modules-load.d is a copy in the work
  directory, so the agent's persistence never writes the machine's file. Mounts made inside
  (overlay snapshots, kubelet's bind mounts) are private and vanish with the namespace.
- cgroups: the kubelet's `cgroupRoot` is a unique `/meshready-node-XXXX` in every hierarchy,
  removed at the end.
- sysctls the kubelet sets machine-wide (`vm.overcommit_memory`, `kernel.panic`,
  `kernel.panic_on_oops`) are recorded before it starts and restored.

Every PID started is recorded in `<workdir>/state.json` with its start time; `cleanup(workdir)`
(also `scripts/node/stop`) kills exactly those, the processes in the cluster's mount namespace
and in its cgroup tree, restores the sysctls and removes what was created, even after a crash.
Facts behind the settings: ../shared/notes/test-infrastructure.md.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.apiserver.cluster import (
    ApiRequestError,
    HarnessError,
    MissingArtifactError,
    RawClient,
    cache_dir,
    find_etcd,
    write_kubeconfig,
)

REPO = Path(__file__).resolve().parents[2]
BUILD_HINT = (
    "run scripts/build-test-artifacts (or scripts/kube/build and scripts/node/fetch-kubectl)"
)
NODE_NAME = "meshready-node"
NODE_IP = "10.201.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
APISERVER_PORT = 6443
PAUSE_REF = "localhost/meshready/pause:3.4"
# The startup taint the node registers with, as a node pool would add it (docs/agent.md).
STARTUP_TAINT = "meshready.io/not-ready=true:NoSchedule"
KUBE_BINARIES = (
    "kube-apiserver",
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-proxy",
    "pause",
)
# Machine-wide sysctls the kubelet sets unconditionally (measured: test-infrastructure.md).
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Mount points the namespace needs that may be missing on the machine: created (and recorded, so
# they are removed again) only when absent. /lib/modules is a hostPath of the agent's DaemonSet.
MOUNT_POINTS = (Path("/var/lib/cni"), Path("/usr/lib/modules"))
STATE = "state.json"
WORKDIR_PREFIX = "meshready-node-"

_PR_SET_PDEATHSIG = 1


# --------------------------------------------------------------------------------------------------
# Locating artifacts


def find_kube_dir() -> Path:
    """The cached build of scripts/kube/build (`$MESHREADY_KUBE_DIR` overrides)."""
    explicit = os.environ.get("MESHREADY_KUBE_DIR")
    root = cache_dir() / "kube"
    directory = Path(explicit) if explicit else None
    if directory is None:
        current = root / "current"
        if current.is_file():
            directory = root / current.read_text().strip()
    if directory is None:
        raise MissingArtifactError(f"no Kubernetes build under {root}: {BUILD_HINT}")
    missing = [b for b in KUBE_BINARIES if not os.access(directory / b, os.X_OK)]
    if missing:
        raise MissingArtifactError(f"{directory} lacks {', '.join(missing)}: {BUILD_HINT}")
    return directory


def find_kubectl() -> Path:
    """Debian's kubernetes-client kubectl, unpacked by scripts/node/fetch-kubectl."""
    explicit = os.environ.get("MESHREADY_KUBECTL")
    if explicit:
        return Path(explicit)
    root = cache_dir() / "kubectl"
    current = root / "current"
    if current.is_file():
        path = root / current.read_text().strip() / "kubectl"
        if os.access(path, os.X_OK):
            return path
    raise MissingArtifactError(f"no kubectl under {root}: {BUILD_HINT}")


def _tool(name: str, package: str) -> str:
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise MissingArtifactError(
        f"{name} not found: install Debian's {package} (scripts/install-test-deps)"
    )


def find_host_tools() -> dict[str, str]:
    """Debian packages the node needs: containerd, runc, CNI plugins, iproute2, util-linux."""
    tools = {
        "containerd": _tool("containerd", "containerd"),
        "ctr": _tool("ctr", "containerd"),
        "shim": _tool("containerd-shim-runc-v2", "containerd"),
        "runc": _tool("runc", "runc"),
        "ip": _tool("ip", "iproute2"),
        "nsenter": _tool("nsenter", "util-linux"),
        "unshare": _tool("unshare", "util-linux"),
        "openssl": _tool("openssl", "openssl"),
        "conntrack": _tool("conntrack", "conntrack"),
    }
    cni = Path("/usr/lib/cni")
    for plugin in ("bridge", "host-local", "loopback"):
        if not os.access(cni / plugin, os.X_OK):
            raise MissingArtifactError(
                f"{cni / plugin} not found: install Debian's containernetworking-plugins"
            )
    tools["cni"] = str(cni)
    return tools


# --------------------------------------------------------------------------------------------------
# State on disk, so that a crashed run can be cleaned up by scripts/node/stop


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a recorded process from a later one with the same PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _load_state(workdir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((workdir / STATE).read_text()))
    except (OSError, ValueError):
        return {}


def _save_state(workdir: Path, state: Mapping[str, Any]) -> None:
    tmp = workdir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(workdir / STATE)


def _ns_id(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _alive(pid: int, start: str | None) -> bool:
    """Is the recorded process still running? A zombie child of ours is reaped and counts as gone."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return start is not None and fields[19] == start and fields[0] != "Z"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: Mapping[int, str | None], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p, s in pids.items() if _alive(p, s)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _alive(p, pids[p])]
    return left


def _stop_recorded(processes: Mapping[str, Any], names: Sequence[str], timeout: float) -> None:
    """SIGTERM the recorded processes NAMES (if still the same processes), SIGKILL after TIMEOUT."""
    targets: dict[int, str | None] = {}
    for name in names:
        entry = processes.get(name)
        if not entry:
            continue
        pid, start = int(entry["pid"]), entry.get("start")
        if _alive(pid, start):
            targets[pid] = start
            _kill(pid, signal.SIGTERM)
    for pid in _wait_gone(targets, timeout):
        _kill(pid, signal.SIGKILL)
    _wait_gone(targets, 5)


def _cgroup_dirs(name: str) -> list[Path]:
    """This cluster's cgroup root in every mounted hierarchy (cgroup v1 and v2)."""
    found = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        candidate = hierarchy / name
        if candidate.is_dir():
            found.append(candidate)
    if (CGROUP_ROOT / name / "cgroup.procs").is_file():  # a pure cgroup v2 machine
        found.append(CGROUP_ROOT / name)
    return found


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroups(name: str, timeout: float = 10.0) -> list[str]:
    """rmdir the tree NAME in every hierarchy, deepest first; return what could not go."""
    deadline = time.monotonic() + timeout
    while True:
        left: list[str] = []
        for top in _cgroup_dirs(name):
            for directory in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            try:
                top.rmdir()
            except OSError:
                left.append(str(top))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def cleanup(workdir: Path, *, keep_workdir: bool = False) -> list[str]:
    """Stop everything a NodeCluster started in WORKDIR and undo its changes; return problems.

    Safe to call twice and after a crash: only processes recorded in the state file (and still the
    same process), processes in the cluster's own mount namespace and processes in its cgroup tree
    are signalled.
    """
    state = _load_state(workdir)
    problems: list[str] = []
    if not state:
        if not keep_workdir and workdir.name.startswith(WORKDIR_PREFIX):
            shutil.rmtree(workdir, ignore_errors=True)
        return problems
    processes: dict[str, Any] = state.get("processes", {})
    cgroup_name = str(state.get("cgroup", ""))
    # Node agents first, then the containers (by cgroup), then the runtime and the control plane.
    _stop_recorded(processes, ["kube-proxy", "kubelet"], 15)
    _stop_recorded(processes, ["kube-scheduler", "kube-controller-manager"], 10)
    if cgroup_name:
        for _ in range(3):
            pids = _cgroup_pids(cgroup_name)
            if not pids:
                break
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.3)
    _stop_recorded(processes, ["containerd"], 10)
    mnt = state.get("mnt_ns")
    if mnt:
        # containerd-shim processes (started by containerd, so not recorded) live in our mount ns.
        own = os.getpid()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != own and _ns_id(entry.name, "mnt") == mnt:
                holder = processes.get("holder", {})
                if int(entry.name) != int(holder.get("pid", -1)) and entry.name not in {
                    str(p.get("pid")) for p in processes.values()
                }:
                    _kill(int(entry.name), signal.SIGKILL)
    _stop_recorded(processes, ["kube-apiserver", "etcd", "forward", "holder"], 10)
    if cgroup_name:
        left = _remove_cgroups(cgroup_name)
        if left:
            problems.append(f"cgroups not removed: {', '.join(left)}")
    for key, value in dict(state.get("sysctls", {})).items():
        try:
            Path("/proc/sys", key).write_text(f"{value}\n")
        except OSError as err:
            problems.append(f"sysctl {key} not restored to {value}: {err}")
    for created in state.get("created", []):
        with contextlib.suppress(OSError):
            Path(created).rmdir()  # only if still empty: never remove what someone put there
    state["cleaned"] = True
    _save_state(workdir, state)
    if not keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return problems


def leftover_workdirs(base: Path | None = None) -> list[Path]:
    """Work directories of clusters that were never cleaned up (for scripts/node/stop --all)."""
    base = base or Path(os.environ.get("TMPDIR", "/var/tmp"))
    found = []
    for candidate in sorted(base.glob(WORKDIR_PREFIX + "*")):
        state = _load_state(candidate)
        if state and not state.get("cleaned"):
            found.append(candidate)
    return found


# --------------------------------------------------------------------------------------------------
# An image archive for the pause binary (docker-archive format, what `ctr images import` reads)


def _tar_bytes(members: Mapping[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_pause_archive(pause: Path, ref: str, destination: Path) -> Path:
    """A one-layer docker-archive with /pause as entrypoint, tagged REF."""
    layer = _tar_bytes({"pause": (pause.read_bytes(), 0o755)})
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "meshready tests/node: build/pause/linux/pause.c"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_digest}/layer.tar"]}]
    ).encode()
    archive = _tar_bytes(
        {
            "manifest.json": (manifest, 0o644),
            config_name: (config, 0o644),
            f"{layer_digest}/layer.tar": (layer, 0o644),
        }
    )
    destination.write_bytes(archive)
    return destination


# --------------------------------------------------------------------------------------------------
# The cluster


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class NodeCluster:
    """A single-node Kubernetes v1.20 (see the module docstring). Use as a context manager.

    After `start()`: `kubeconfig` (admin, server on this machine's loopback), `server`,
    `workdir`, `api` (RawClient), `startup_seconds`; `kubectl(...)` runs Debian's kubectl with
    `kubectl-meshready` on PATH; `import_image(archive)` loads an image archive into containerd.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        keep_workdir: bool | None = None,
        die_with_parent: bool = True,
        register_taints: Sequence[str] = (STARTUP_TAINT,),
    ) -> None:
        if os.geteuid() != 0:
            raise MissingArtifactError("the node cluster needs root (namespaces, cgroups, mounts)")
        self.kube = find_kube_dir()
        self.kubectl_binary = find_kubectl()
        self.etcd_binary = find_etcd()
        self.tools = find_host_tools()
        base = Path(os.environ.get("TMPDIR", "/var/tmp"))
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base))
        self.keep_workdir = (
            keep_workdir
            if keep_workdir is not None
            else os.environ.get("MESHREADY_KEEP_CLUSTER") == "1"
        )
        self.die_with_parent = die_with_parent
        self.register_taints = list(register_taints)
        self.cgroup = self.workdir.name  # unique: meshready-node-XXXXXXXX
        self.state: dict[str, Any] = {
            "workdir": str(self.workdir),
            "processes": {},
            "cgroup": self.cgroup,
            "created": [],
            "sysctls": {},
        }
        self.tokens = {
            name: secrets.token_hex(16)
            for name in ("admin", "kubelet", "controller-manager", "scheduler", "kube-proxy")
        }
        self.server = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.startup_seconds = 0.0
        self._api: RawClient | None = None
        self._logs: dict[str, Path] = {}
        self._closed = False
        atexit.register(self.close)

    # ---- lifecycle

    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 180.0) -> NodeCluster:
        began = time.monotonic()
        try:
            self._record_sysctls()
            self._make_namespaces()
            self._write_config()
            self._start_control_plane(timeout)
            self._start_node(timeout)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        problems = cleanup(self.workdir, keep_workdir=self.keep_workdir)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if problems:
            raise HarnessError("node cleanup: " + "; ".join(problems))

    # ---- set-up steps

    def _save(self) -> None:
        _save_state(self.workdir, self.state)

    def _record_sysctls(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for key in KUBELET_SYSCTLS:
            self.state["sysctls"][key] = Path("/proc/sys", key).read_text().strip()
        self._save()

    def _spawn(self, name: str, argv: Sequence[str], *, in_ns: bool = True) -> int:
        """Start NAME (inside the cluster's namespaces unless IN_NS is false) and record it."""
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        self._logs[name] = log
        if in_ns:
            holder = int(self.state["processes"]["holder"]["pid"])
            argv = [self.tools["nsenter"], f"--target={holder}", "--mount", "--net", "--", *argv]
        with log.open("ab") as out:
            out.write(f"\n===== {time.strftime('%H:%M:%S')} start {name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
                cwd=self.workdir,
            )
        # nsenter execs the command: the PID is the daemon's own. Wait for the exec so the
        # recorded start time is the daemon's.
        start = _start_time(proc.pid)
        self.state["processes"][name] = {"pid": proc.pid, "start": start, "argv": list(argv)}
        self._save()
        return proc.pid

    def _in_ns(
        self, argv: Sequence[str], *, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        holder = int(self.state["processes"]["holder"]["pid"])
        full = [self.tools["nsenter"], f"--target={holder}", "--mount", "--net", "--", *argv]
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise HarnessError(
                f"{' '.join(argv)} (in the node namespaces): {result.stderr.strip()}"
            )
        return result

    def _make_namespaces(self) -> None:
        for point in MOUNT_POINTS:
            if not point.exists():
                point.mkdir(parents=True)
                self.state["created"].append(str(point))
        self._save()
        holder = self._spawn(
            "holder",
            [
                self.tools["unshare"],
                "--mount",
                "--net",
                "--propagation=private",
                "sleep",
                "infinity",
            ],
            in_ns=False,
        )
        own_mnt = _ns_id("self", "mnt")
        deadline = time.monotonic() + 10
        while _ns_id(holder, "mnt") in (None, own_mnt):
            if time.monotonic() > deadline:
                raise HarnessError("the namespace holder (unshare) did not start")
            time.sleep(0.02)
        self.state["processes"]["holder"]["start"] = _start_time(holder)
        self.state["mnt_ns"] = _ns_id(holder, "mnt")
        self.state["net_ns"] = _ns_id(holder, "net")
        self._save()
        modules_load = self.workdir / "host" / "modules-load.d"
        modules_load.parent.mkdir(exist_ok=True)
        shutil.copytree("/etc/modules-load.d", modules_load, symlinks=True)
        script = "\n".join(
            [
                "set -e",
                "mount -t tmpfs -o mode=0755 meshready-run /run",
                "mount -t tmpfs -o mode=0755 meshready-log /var/log",
                "mount -t tmpfs -o mode=0755 meshready-cni /var/lib/cni",
                f"mount --bind {modules_load} /etc/modules-load.d",
                "ip link set lo up",
                "ip link add node0 type veth peer name node1",
                f"ip addr add {NODE_IP}/24 dev node0",
                "ip link set node0 up",
                "ip link set node1 up",
                # Every destination is 'routable' inside, and goes nowhere: no link leaves.
                "ip route add default dev node0",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ]
        )
        self._in_ns(["/bin/sh", "-c", script])
        # The cgroup root for pods, in every hierarchy; cpuset needs its cpus/mems filled in.
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if not hierarchy.is_dir() or not (hierarchy / "cgroup.procs").exists():
                continue
            target = hierarchy / self.cgroup
            target.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / knob).exists():
                    (target / knob).write_text((hierarchy / knob).read_text())

    def _write_config(self) -> None:
        w = self.workdir
        (w / "pki").mkdir(exist_ok=True)
        ssl = self.tools["openssl"]

        def run(*args: str) -> None:
            subprocess.run([ssl, *args], check=True, capture_output=True, timeout=60)

        pki = w / "pki"
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "ca.key"))
        run(
            "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
            "-days", "2", "-subj", "/CN=meshready-test-ca",
        )  # fmt: skip
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "api.key"))
        run(
            "req", "-new", "-key", str(pki / "api.key"), "-out", str(pki / "api.csr"),
            "-subj", "/CN=kube-apiserver",
        )  # fmt: skip
        sans = ",".join(
            [
                "IP:127.0.0.1",
                f"IP:{NODE_IP}",
                f"IP:{SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        (pki / "api.ext").write_text(
            f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
        )
        run(
            "x509", "-req", "-in", str(pki / "api.csr"), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-out", str(pki / "api.crt"),
            "-days", "2", "-extfile", str(pki / "api.ext"),
        )  # fmt: skip
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "sa.key"))
        users = {
            "admin": ("admin", "system:masters"),
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            # The control plane as admins: a test cluster, fewer moving parts than per-controller
            # ServiceAccounts.
            "controller-manager": ("system:kube-controller-manager", "system:masters"),
            "scheduler": ("system:kube-scheduler", "system:masters"),
            "kube-proxy": ("system:kube-proxy", "system:node-proxier"),
        }
        lines = [
            f'{self.tokens[key]},{user},{user},"{group}"' for key, (user, group) in users.items()
        ]
        (pki / "tokens.csv").write_text("\n".join(lines) + "\n")
        (pki / "tokens.csv").chmod(0o600)
        ca = (pki / "ca.crt").read_bytes()
        inside = f"https://{NODE_IP}:{APISERVER_PORT}"
        for key, (user, _) in users.items():
            write_kubeconfig(
                w / "kubeconfigs" / f"{key}.kubeconfig",
                server=inside,
                ca_pem=ca,
                token=self.tokens[key],
                user=user,
            )
        cni_conf = w / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-meshready.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "meshready-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "mr0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(w / "cni" / "ipam"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        ctrd = w / "containerd"
        (ctrd / "root").mkdir(parents=True, exist_ok=True)
        (ctrd / "state").mkdir(parents=True, exist_ok=True)
        self.containerd_socket = ctrd / "containerd.sock"
        (ctrd / "config.toml").write_text(
            f"""version = 2
root = "{ctrd / "root"}"
state = "{ctrd / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{ctrd / "containerd.ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # This machine lacks CAP_SYS_RESOURCE: without it every sandbox fails
  # ("can't get final child's PID"); see test-infrastructure.md.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.tools["cni"]}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{self.tools["runc"]}"
        SystemdCgroup = false
"""
        )
        kubelet_dir = w / "kubelet"
        kubelet_dir.mkdir(exist_ok=True)
        (w / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (w / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": NODE_IP,
                    "port": 10250,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": 10248,
                    # Reachable only inside the namespace: the apiserver (logs, exec) may ask.
                    "authentication": {
                        "anonymous": {"enabled": True},
                        "webhook": {"enabled": False},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{self.cgroup}",
                    "failSwapOn": False,
                    # Else the kubelet adds KUBE-* chains: kube-proxy's job here.
                    "makeIPTablesUtilChains": False,
                    "podCIDR": POD_CIDR,
                    "clusterDomain": "cluster.local",
                    # No DNS server runs (nothing here resolves names); set so the kubelet does
                    # not warn on every pod sync.
                    "clusterDNS": ["10.96.0.10"],
                    "resolvConf": str(w / "resolv.conf"),
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                    },
                    "registerWithTaints": [],
                    "serializeImagePulls": False,
                    "nodeStatusUpdateFrequency": "4s",
                    "syncFrequency": "10s",
                    "fileCheckFrequency": "10s",
                },
                indent=2,
            )
        )
        self._save()

    def _start_control_plane(self, timeout: float) -> None:
        w, pki = self.workdir, self.workdir / "pki"
        etcd_data = w / "etcd"
        etcd_data.mkdir(mode=0o700, exist_ok=True)
        self._spawn(
            "etcd",
            [
                str(self.etcd_binary),
                "--name=meshready",
                f"--data-dir={etcd_data}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=meshready=http://127.0.0.1:2380",
                "--log-level=warn",
                "--unsafe-no-fsync",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.kube / "kube-apiserver"),
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0",
                f"--advertise-address={NODE_IP}",
                f"--secure-port={APISERVER_PORT}",
                f"--tls-cert-file={pki / 'api.crt'}",
                f"--tls-private-key-file={pki / 'api.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--endpoint-reconciler-type=lease",
                "--profiling=false",
            ],
        )
        port_file = w / "forward.port"
        self._spawn(
            "forward",
            [
                sys.executable,
                str(REPO / "scripts" / "node" / "forward.py"),
                f"--netns=/proc/{self.state['processes']['holder']['pid']}/ns/net",
                f"--target={NODE_IP}:{APISERVER_PORT}",
                f"--port-file={port_file}",
                *(["--die-with-parent"] if self.die_with_parent else []),
            ],
            in_ns=False,
        )
        self._wait("the forwarder's port", port_file.is_file, 10, "forward")
        port = int(port_file.read_text())
        self.server = f"https://127.0.0.1:{port}"
        ca = (pki / "ca.crt").read_bytes()
        write_kubeconfig(
            self.kubeconfig, server=self.server, ca_pem=ca, token=self.tokens["admin"], user="admin"
        )
        api = self.api

        def ready() -> bool:
            return api.request_text("GET", "/readyz", timeout=3).strip() == "ok"

        self._wait("kube-apiserver /readyz", ready, timeout, "kube-apiserver")
        kubeconfigs = w / "kubeconfigs"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.kube / "kube-controller-manager"),
                f"--kubeconfig={kubeconfigs / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                "--port=0",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-cloud-node-lifecycle,-route,-service",
                "--node-monitor-grace-period=20s",
                "--pod-eviction-timeout=30s",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.kube / "kube-scheduler"),
                f"--kubeconfig={kubeconfigs / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                "--port=0",
                "--leader-elect=false",
            ],
        )

    def _start_node(self, timeout: float) -> None:
        w = self.workdir
        self._spawn(
            "containerd",
            [
                self.tools["containerd"],
                f"--config={w / 'containerd' / 'config.toml'}",
                "--log-level=warn",
            ],
        )
        self._wait(
            "containerd's socket",
            lambda: self.ctr("version", timeout=5, check=False).returncode == 0,
            30,
            "containerd",
        )
        pause_archive = write_pause_archive(self.kube / "pause", PAUSE_REF, w / "pause.tar")
        self.import_image(pause_archive)
        self.start_kubelet()
        self._spawn(
            "kube-proxy",
            [
                str(self.kube / "kube-proxy"),
                f"--kubeconfig={w / 'kubeconfigs' / 'kube-proxy.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                f"--bind-address={NODE_IP}",
                f"--cluster-cidr={POD_CIDR}",
                "--proxy-mode=iptables",
                # Leave the machine-wide conntrack settings alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--oom-score-adj=0",
            ],
        )
        self.wait_node_ready(timeout)

    def start_kubelet(self) -> None:
        w = self.workdir
        self._spawn(
            "kubelet",
            [
                str(self.kube / "kubelet"),
                f"--config={w / 'kubelet.yaml'}",
                f"--kubeconfig={w / 'kubeconfigs' / 'kubelet.kubeconfig'}",
                f"--root-dir={w / 'kubelet'}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.containerd_socket}",
                f"--pod-infra-container-image={PAUSE_REF}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                *(
                    [f"--register-with-taints={','.join(self.register_taints)}"]
                    if self.register_taints
                    else []
                ),
                "--v=1",
            ],
        )

    def stop_kubelet(self) -> None:
        _stop_recorded(self.state["processes"], ["kubelet"], 15)

    def restart_kubelet(self, timeout: float = 120.0) -> None:
        """Stop and start the kubelet; return once the new one has posted the Node's status."""
        self.stop_kubelet()
        restarted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.start_kubelet()

        def fresh() -> bool:
            for item in self.node().get("status", {}).get("conditions", []):
                if item["type"] == "Ready":
                    return bool(item["status"] == "True" and item["lastHeartbeatTime"] > restarted)
            return False

        self._wait("the restarted kubelet's first Node status", fresh, timeout, "kubelet")

    def process_alive(self, name: str) -> bool:
        entry = self.state["processes"].get(name)
        return bool(entry) and _alive(int(entry["pid"]), entry.get("start"))

    def _wait(self, what: str, check: Callable[[], object], timeout: float, process: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.process_alive(process):
                raise HarnessError(
                    f"{process} exited while waiting for {what}:\n{self.log_tail(process)}"
                )
            try:
                if check():
                    return
            except (OSError, HarnessError, ValueError, subprocess.SubprocessError) as err:
                last = err
            time.sleep(0.2)
        raise HarnessError(
            f"{what}: not ready after {timeout:.0f} s ({last}); {process} log:\n"
            + self.log_tail(process)
        )

    def wait_node_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until the Node reports Ready=True; return it."""
        found: dict[str, Any] = {}

        def ready() -> bool:
            nonlocal found
            found = self.node()
            conditions = found.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait("Node Ready", ready, timeout, "kubelet")
        return found

    # ---- using it

    @property
    def api(self) -> RawClient:
        if self._api is None:
            self._api = RawClient.from_kubeconfig(self.kubeconfig)
        return self._api

    def node(self) -> dict[str, Any]:
        return dict(self.api.get(f"/api/v1/nodes/{NODE_NAME}"))

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self._logs.get(name, self.workdir / "logs" / f"{name}.log")
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def env(self) -> dict[str, str]:
        """Environment for kubectl and the plugin: admin kubeconfig, kubectl + .venv on PATH."""
        env = dict(os.environ)
        venv_bin = REPO / ".venv" / "bin"
        env["PATH"] = os.pathsep.join(
            [str(self.kubectl_binary.parent), str(venv_bin), env.get("PATH", "/usr/bin:/bin")]
        )
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(
        self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run Debian's kubectl (v1.20) against the cluster; raise with its output on failure."""
        result = subprocess.run(
            [str(self.kubectl_binary), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n"
                f"{result.stderr}"
            )
        return result

    def ctr(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """containerd's ctr in the `k8s.io` namespace (the one the CRI plugin uses)."""
        result = subprocess.run(
            [self.tools["ctr"], f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise HarnessError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result

    def import_image(self, archive: Path) -> str:
        """Import a docker-archive or OCI archive into containerd (unpacked for the CRI)."""
        if not archive.is_file():
            raise MissingArtifactError(f"image archive {archive} not found")
        return self.ctr("images", "import", str(archive), timeout=300).stdout

    def image_refs(self) -> list[str]:
        out = self.ctr("images", "list", "--quiet").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def container_spec(self, container_id: str) -> dict[str, Any]:
        """The OCI runtime spec containerd gave runc for a container (CRI id, `containerd://` ok)."""
        cid = re.sub(r"^[a-z]+://", "", container_id)
        out = self.ctr("containers", "info", cid).stdout
        info = json.loads(out)
        return dict(info["Spec"])

    def wait_for(
        self, what: str, check: Callable[[], object], timeout: float = 120.0, interval: float = 0.5
    ) -> Any:
        """Poll CHECK until it returns something true (exceptions: not yet); return that value."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                value = check()
                if value:
                    return value
            except (HarnessError, ApiRequestError, OSError, ValueError, KeyError) as err:
                last = err
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"not true after {timeout:g} s: {what}"
                    + (f" (last error: {last})" if last else "")
                    + "\nkubelet log:\n"
                    + self.log_tail("kubelet", 25)
                )
            time.sleep(interval)
