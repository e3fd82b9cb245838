"""Issue 15 item 4: the real agent image on a kernel with loadable modules.

In the qemu guests (autoload off), the image built by scripts/image/build runs with Debian's runc
as the DaemonSet's pod: each container (the init containers in order, then the agent) from an OCI
config carrying that container's exact security context from `meshready render manifests`
(capabilities added, everything else dropped, read-only root, noNewPrivileges, runAsUser 0, its
hostPath and emptyDir mounts, the emptyDirs shared by the pod) and containerd 1.6's RuntimeDefault
seccomp profile as containerd itself generates it for those capabilities (scripts/image/ocispec.py).
tests/vm/guest/scenario_image_container.py runs in the guest:

- before: a mesh's init container (istio-init's NET_ADMIN + NET_RAW) fails to apply Istio's rules
  with `unable to initialize table 'nat'`;
- each container's context is in force (capability sets, seccomp filter mode 2, NoNewPrivs,
  read-only root);
- the container that holds CAP_SYS_MODULE, without it: EPERM, nothing loaded, nothing persisted;
- the pod: its init container loads what is missing (finit_module) and persists into
  /host/etc/modules-load.d; the agent container, `--once --no-cluster` added to its arguments,
  passes the in-place probe and reports ready (exit 0);
- after: the mesh's init container applies its rules.

Prerequisites (fail, never skip): the cached kernels (scripts/build-test-artifacts), containerd
(scripts/install-test-deps) and the image for the kernel's arch, built from this tree
(scripts/image/build --image agent --arch ARCH).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import vmlib
import yaml
from harness import GUEST_DIR, HINT, GuestError, GuestResult, parse_checks, run_in_guest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "image"))
import imagelib  # noqa: E402
import ocispec  # noqa: E402
import vmpiece  # noqa: E402

pytestmark = pytest.mark.vm

# The arm64 image is built under qemu-user emulation: about 15 min cold on this machine's two cores,
# too much for every CI run. MESHREADY_ARM64_IMAGE=1 (as `scripts/build-test-artifacts` reads it
# too) builds it and adds the arm64 guest here; without it the arm64 case is not collected at all.
KERNELS = (
    ("6.1-amd64", "6.1-arm64") if os.environ.get("MESHREADY_ARM64_IMAGE") == "1" else ("6.1-amd64",)
)
RULES = "sidecar-iptables/dns-uid-gid.v4.rules"
SCRIPT = f"{GUEST_DIR}/scenario_image_container.py"
# include/uapi/linux/capability.h
CAP_BITS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}  # fmt: skip
# istio-init's container securityContext (Istio's sidecar injection template): NET_ADMIN and
# NET_RAW, everything else dropped, root, no privilege escalation.
POD_CAPS = ["NET_ADMIN", "NET_RAW"]


def rendered_pod() -> dict[str, Any]:
    """The DaemonSet's pod spec, from `meshready render manifests` (the working tree's)."""
    proc = subprocess.run(
        [sys.executable, "-m", "meshready.cli.main", "render", "manifests"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for doc in yaml.safe_load_all(proc.stdout):
        if doc and doc.get("kind") == "DaemonSet":
            return dict(doc["spec"]["template"]["spec"])
    raise AssertionError("render manifests printed no DaemonSet")


def image_config(built: imagelib.Built) -> dict[str, Any]:
    tf, _layers = imagelib.docker_layers(built.docker_path)
    with tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tf.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
    return dict(config.get("config") or {})


def cap_hex(caps: list[str]) -> str:
    return f"{sum(1 << CAP_BITS[c.removeprefix('CAP_')] for c in caps):016x}"


def container_caps(container: dict[str, Any]) -> list[str]:
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        raise AssertionError(f"{container['name']}: privileged")
    caps = sc.get("capabilities") or {}
    if caps.get("drop") != ["ALL"]:
        raise AssertionError(f"{container['name']}: does not drop ALL capabilities: {caps}")
    return list(caps.get("add") or [])


def oci_config(
    arch: str,
    caps: list[str],
    security: dict[str, Any],
    mounts: list[dict[str, Any]],
    env: list[str],
    args: list[str],
) -> dict[str, Any]:
    """containerd's own spec for CAPS (seccomp profile, default mounts, masked paths), shaped as
    the CRI shapes it for a container with SECURITY (a Kubernetes securityContext) and MOUNTS."""
    spec = copy.deepcopy(ocispec.generate(arch, caps))
    spec["root"] = {"path": "rootfs", "readonly": bool(security.get("readOnlyRootFilesystem"))}
    proc = spec["process"]
    proc["user"] = {"uid": int(security.get("runAsUser", 0)), "gid": 0}
    proc["noNewPrivileges"] = not security.get("allowPrivilegeEscalation", True)
    proc["env"] = env
    proc["cwd"] = "/"
    proc["terminal"] = False
    proc["args"] = args
    # The CRI drops containerd's default /run tmpfs (customopts.WithoutRunMount) and mounts the
    # volumes sorted by depth, parents first (pkg/cri/opts/spec_linux.go orderedMounts).
    volumes = sorted(mounts, key=lambda m: len(Path(m["destination"]).parts))
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/run"] + volumes
    return spec


def volume_mounts(
    container: dict[str, Any], volumes: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes[vm["name"]]
        ro = ["ro"] if vm.get("readOnly") else []
        if "hostPath" in vol:
            source = vol["hostPath"]["path"]
        elif "emptyDir" in vol:
            source = f"emptydir:{vm['name']}"  # the guest makes one directory per pod and volume
        else:
            raise AssertionError(f"volume {vm['name']}: neither hostPath nor emptyDir: {vol}")
        out.append({"destination": vm["mountPath"], "type": "bind", "source": source,
                    "options": ["rbind", "rprivate", *ro]})  # fmt: skip
    return out


def container_entry(
    arch: str,
    container: dict[str, Any],
    volumes: dict[str, dict[str, Any]],
    image: dict[str, Any],
    configs: Path,
    extra_args: list[str],
    name: str | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write configs/NAME.json for CONTAINER (its command or the image's entrypoint, its args
    plus EXTRA_ARGS, its securityContext minus DROP) and describe it for the guest."""
    name = name or container["name"]
    caps = [c for c in container_caps(container) if c not in drop]
    argv = list(container.get("command") or image.get("Entrypoint") or [])
    argv += list(container.get("args") or image.get("Cmd") or []) + extra_args
    env = [*(image.get("Env") or []), "NODE_NAME=guest"]
    sc = container.get("securityContext") or {}
    spec = oci_config(arch, caps, sc, volume_mounts(container, volumes), env, argv)
    (configs / f"{name}.json").write_text(json.dumps(spec, indent=1))
    return {"name": name, "config": f"configs/{name}.json", "cap_eff": cap_hex(caps)}


def payload_for(arch: str, dest: Path) -> Path:
    built = imagelib.cached("agent", arch)
    if built is None:
        raise GuestError(
            f"the agent image for {arch} is not built from this tree: run scripts/image/build "
            f"--image agent --arch {arch} (scripts/build-test-artifacts does)"
        )
    image = image_config(built)
    pod = rendered_pod()
    volumes = {v["name"]: v for v in pod["volumes"]}
    configs = dest / "configs"
    configs.mkdir(parents=True)
    inits = [
        container_entry(arch, c, volumes, image, configs, [])
        for c in pod.get("initContainers") or []
    ]
    (main,) = [c for c in pod["containers"] if c["name"] == "agent"]
    agent = container_entry(
        arch, main, volumes, image, configs, ["--once", "--no-cluster", "-o", "json"]
    )
    # The negative control: the container holding CAP_SYS_MODULE, without it.
    loader = next(
        c for c in [*(pod.get("initContainers") or []), main] if "SYS_MODULE" in container_caps(c)
    )
    nocap = container_entry(
        arch, loader, volumes, image, configs, [], name="nocap", drop=("SYS_MODULE",)
    )
    # A mesh's init container in another pod: istio-init's context, the rules at /rules.
    mesh_volumes: dict[str, dict[str, Any]] = {
        "rules": {"hostPath": {"path": "/meshready-vm/rules"}},
        "run": {"emptyDir": {}},
    }
    mesh: dict[str, Any] = {
        "name": "mesh-init",
        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": POD_CAPS}},
        "volumeMounts": [{"name": "rules", "mountPath": "/rules", "readOnly": True},
                         {"name": "run", "mountPath": "/run"}],
        "command": ["true"],
    }  # fmt: skip
    mesh_init = container_entry(arch, mesh, mesh_volumes, image, configs, [])
    scenario = {
        "agent_pod": {"init": inits, "main": agent},
        "nocap": nocap,
        "mesh_init": mesh_init,
        "rules": RULES,
    }
    (dest / "scenario.json").write_text(json.dumps(scenario, indent=1))
    return dest


class Runs:
    """One guest boot per kernel, two at a time, all started when the module's first test asks."""

    def __init__(self, base: Path, kernels: list[str]) -> None:
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="vm-image")
        self.futures: dict[str, Future[GuestResult]] = {
            k: self.pool.submit(self._run, k, base / k) for k in kernels
        }

    @staticmethod
    def _run(kernel: str, work: Path) -> GuestResult:
        try:
            arch = vmlib.find_kernel(kernel).arch
            payload = payload_for(arch, work)
            piece = vmpiece.piece("agent", arch)
        except (imagelib.ImageError, vmlib.VmError) as exc:
            raise GuestError(f"{kernel}: {exc}\n-> {HINT}") from exc
        return run_in_guest(
            kernel, ["python3", SCRIPT], False, 900.0,
            with_meshready=False, payload=payload, extra_pieces=[piece],
        )  # fmt: skip

    def result(self, kernel: str) -> GuestResult:
        try:
            return self.futures[kernel].result()
        except GuestError as exc:
            pytest.fail(str(exc), pytrace=False)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    kernels = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is request.module and callspec is not None:
            k = str(callspec.params["kernel"])
            if k not in kernels:
                kernels.append(k)
    r = Runs(tmp_path_factory.mktemp("vm-image"), kernels)
    yield r
    r.close()


def checks(runs: Runs, kernel: str, prefix: str) -> None:
    """Fail unless the guest finished and its checks under PREFIX ran and passed."""
    res = runs.result(kernel)
    parsed = parse_checks(res.output)
    chosen = parsed.select(prefix)
    failing = [c for c in chosen if not c.ok]
    problems = []
    if parsed.passed is None:
        problems.append("the guest script did not finish (no closing line)")
    if not chosen:
        problems.append(f"no check {prefix}* ran")
    if failing:
        problems.append(f"{len(failing)} of {len(chosen)} checks failed")
    if problems:
        lines = [f"{kernel} ({res.seconds:.0f}s): " + "; ".join(problems)]
        lines += [c.describe() for c in failing]
        lines += ["--- guest output (tail) ---", *res.output.splitlines()[-60:]]
        if parsed.passed is None:
            lines += ["--- console (tail) ---", *res.console.splitlines()[-30:]]
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.parametrize("kernel", KERNELS)
def test_before_the_pod_rules_fail(runs: Runs, kernel: str) -> None:
    checks(runs, kernel, "setup/")
    checks(runs, kernel, "before/")


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_daemonset_security_context_is_in_force(runs: Runs, kernel: str) -> None:
    checks(runs, kernel, "context/")


@pytest.mark.parametrize("kernel", KERNELS)
def test_without_sys_module_nothing_loads(runs: Runs, kernel: str) -> None:
    checks(runs, kernel, "nocap/")


@pytest.mark.parametrize("kernel", KERNELS)
def test_agent_loads_persists_and_probes(runs: Runs, kernel: str) -> None:
    checks(runs, kernel, "agent/")


@pytest.mark.parametrize("kernel", KERNELS)
def test_after_the_pod_rules_apply(runs: Runs, kernel: str) -> None:
    checks(runs, kernel, "after/")
