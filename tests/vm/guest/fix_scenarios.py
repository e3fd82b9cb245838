#!/usr/bin/env python3
"""`meshready fix`, `unfix` and `probe` inside the test guest (a real Debian kernel, autoload off).

    fix_scenarios.py fix LOADER...   from the founding failure: fix with each loader makes the pod's
                                     restore succeed and the probe (netns and inplace) pass
    fix_scenarios.py reboot          a fresh boot that only applies the persisted file (what
                                     systemd-modules-load does), then the pod's restore
    fix_scenarios.py errors LOADER...  each refusal made real: message, exit 1, no file, no change
    fix_scenarios.py bench N         load times of the Istio set: kmod's modprobe and each loader

The payload (working directory) carries veth.ko[.xz] from the same kernel (the netns probe needs a
veth pair; the guest's module tree holds only netfilter) and, for `reboot`, meshready.conf.
Output: PASS/FAIL lines (tests/vm/harness.py parses them), `CONF| ` lines with the persisted file,
`BENCH ` lines with figures.
"""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, "/meshready-vm/guest")
from mrguest import (
    MODDIR,
    RULES,
    Modules,
    Report,
    meshready,
    pod,
    sh,
    tail,
)

CONF = Path("/etc/modules-load.d/meshready.conf")
WORK = Path("/meshready-vm/work")
PROFILE_DIR = Path("/tmp/profiles")
SHARED_RULE = RULES / "sidecar-iptables" / "ipv6-dns-uid-gid.v4.rules"
SHARED_RULE_V6 = RULES / "sidecar-iptables" / "ipv6-dns-uid-gid.v6.rules"
SIG_MAGIC = b"~Module signature appended~\n"
PERSISTED: list[str] = []  # the file the first loader's fix wrote (printed once)


# --------------------------------------------------------------------------- helpers


def profile_data_problem() -> str:
    """The installed package must carry its profile rule files (package data in pyproject)."""
    import meshready.knowledge as knowledge

    installed = Path(knowledge.__file__).parent / "data" / "profiles"
    if any(installed.glob("*.rules")):
        return ""
    return f"the installed meshready lacks its profile rule files ({installed})"


def load_veth() -> str:
    found = sorted(WORK.glob("veth.ko*"))
    if not found:
        return "no veth module in the payload"
    proc = sh(["insmod", str(found[0])])
    return "" if proc.returncode == 0 else f"insmod veth: {proc.stderr.strip()}"


def profile_files(profile: str) -> list[Path]:
    """The profile's rule files written out, as the mesh's init container would apply them."""
    from meshready.knowledge.profiles import PROFILES

    prof = PROFILES[profile]
    PROFILE_DIR.mkdir(exist_ok=True)
    out = []
    for name in prof.files:
        path = PROFILE_DIR / name
        path.write_text(prof.read(name))
        out.append(path)
    return out


def pod_apply(rules: Path, backend: str = "legacy") -> subprocess.CompletedProcess[str]:
    if rules.suffix == ".nft":
        return pod(["nft", "-f", str(rules)])
    six = "6" if rules.name.endswith(".v6.rules") else ""
    return pod([f"ip{six}tables-{backend}-restore"], rules)


def run_json(args: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    proc = meshready(args)
    text = f"exit {proc.returncode}\nstdout:\n{tail(proc.stdout, 30)}\nstderr:\n{tail(proc.stderr)}"
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, None, text
    return proc.returncode, data if isinstance(data, dict) else None, text


def conf_state() -> str | None:
    return CONF.read_text() if CONF.exists() else None


def modules_load_dir_clean() -> bool:
    d = CONF.parent
    return not d.exists() or not any(d.iterdir())


def module_file(name: str) -> Path:
    for line in (MODDIR / "modules.dep").read_text().splitlines():
        rel = line.split(":", 1)[0]
        if rel.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_") == name:
            return MODDIR / rel
    raise KeyError(name)


def read_image(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def write_image(path: Path, image: bytes) -> None:
    if path.name.endswith(".xz"):
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
        data = lzma.compress(image, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
    else:
        data = image
    path.write_bytes(data)


def signature_span(image: bytes) -> tuple[int, int]:
    """(start of the signature data, start of struct module_signature) of a signed module."""
    if not image.endswith(SIG_MAGIC):
        raise ValueError("module is not signed")
    info_at = len(image) - len(SIG_MAGIC) - 12
    sig_len = int.from_bytes(image[info_at + 8 : info_at + 12], "big")
    return info_at - sig_len, info_at


def corrupt_signature(path: Path) -> bytes:
    original = path.read_bytes()
    image = bytearray(read_image(path))
    _, info_at = signature_span(bytes(image))
    image[info_at - 20] ^= 0xFF  # inside the RSA signature value: verification fails
    write_image(path, bytes(image))
    return original


def strip_signature(path: Path) -> bytes:
    original = path.read_bytes()
    image = read_image(path)
    start, _ = signature_span(image)
    write_image(path, image[:start])
    return original


def mounted_securityfs() -> bool:
    if Path("/sys/kernel/security/lockdown").exists():
        return True
    return sh(["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"]).returncode == 0


# --------------------------------------------------------------------------- scenario: fix


def fix_with(r: Report, mods: Modules, loader: str, rules: list[Path], tag: str) -> None:
    r.check(f"{tag}/precondition", "ip_tables" not in mods.loaded(), "ip_tables already loaded")
    res = pod_apply(rules[0])
    r.check(
        f"{tag}/founding-failure",
        res.returncode != 0 and "unable to initialize table 'nat'" in res.stdout + res.stderr,
        f"the pod's restore exited {res.returncode} without the founding error",
        res.stdout + res.stderr,
    )
    dry_code, dry, text = run_json(["fix", "--dry-run", "-o", "json"])
    r.check(
        f"{tag}/dry-run-changes-nothing",
        dry_code == 0 and dry is not None and conf_state() is None
        and "ip_tables" not in mods.loaded() and bool(dry["plan"]["load"]),
        "fix --dry-run changed something or printed no plan",
        text,
    )  # fmt: skip
    t0 = time.monotonic()
    code, data, text = run_json(["fix", "--loader", loader, "-o", "json"])
    took = time.monotonic() - t0
    ok = code == 0 and data is not None and data.get("ready") is True
    r.check(f"{tag}/fix-ready", ok, f"meshready fix --loader {loader} exited {code}", text)
    if data is None or data.get("result") is None:
        return
    plan, result = data["plan"], data["result"]
    r.note(
        f"{tag}: {len(result['loaded'])} modules in {result['duration_s']:.2f}s ({took:.1f}s with python start)"
    )
    r.check(
        f"{tag}/loaded-in-plan-order",
        result["loaded"] == plan["load"] and plan["load"][0] == "x_tables",
        "loaded list differs from the plan's order",
        json.dumps({"plan": plan["load"], "loaded": result["loaded"]}),
    )
    r.check(
        f"{tag}/loader-used",
        str(result["loader"]).startswith(loader),
        f"loader reported as {result['loader']}",
    )
    r.check(
        f"{tag}/persisted",
        result["persist_action"] == "create" and conf_state() == plan["persist_content"],
        "the persisted file is not the plan's content",
        str(conf_state()),
    )
    missing = sorted(set(plan["load"]) - mods.loaded())
    r.check(f"{tag}/modules-live", not missing, f"not loaded: {missing}")
    for rule in [*rules, SHARED_RULE, SHARED_RULE_V6]:
        res = pod_apply(rule)
        r.check(
            f"{tag}/pod-restore-{rule.name}",
            res.returncode == 0,
            f"the pod's restore exited {res.returncode} (autoload off)",
            res.stdout + res.stderr,
        )
    pcode, probe, text = run_json(["probe", "-o", "json"])
    r.check(
        f"{tag}/probe-netns",
        pcode == 0 and probe is not None and probe.get("ok") is True
        and probe.get("original_dst") == "192.0.2.2:8080",
        f"meshready probe exited {pcode}",
        text,
    )  # fmt: skip
    # the agent's probe in a pod's own namespace (lo up, as in every pod)
    inplace_cmd = f"ip link set lo up && exec {sys.executable} -m meshready.cli.main probe --mode inplace -o json"
    res = pod(["sh", "-c", inplace_cmd])
    try:
        inplace = json.loads(res.stdout)
    except ValueError:
        inplace = {}
    r.check(
        f"{tag}/probe-inplace-in-pod",
        res.returncode == 0 and inplace.get("ok") is True,
        f"probe --mode inplace in a pod exited {res.returncode}",
        res.stdout + res.stderr,
    )
    before = CONF.stat().st_mtime_ns if CONF.exists() else None
    code2, again, text = run_json(["fix", "--loader", loader, "-o", "json"])
    r.check(
        f"{tag}/idempotent",
        code2 == 0 and again is not None and again.get("result") is None
        and CONF.exists() and CONF.stat().st_mtime_ns == before,
        "a second fix changed something",
        text,
    )  # fmt: skip
    content = conf_state() or ""
    if not PERSISTED:
        PERSISTED.append(content)
        for line in content.splitlines():
            print(f"CONF| {line}", flush=True)
    else:
        r.check(
            f"{tag}/same-file", content == PERSISTED[0], "another loader persisted another file"
        )
    un = meshready(["unfix"])
    r.check(
        f"{tag}/unfix",
        un.returncode == 0 and not CONF.exists() and set(plan["load"]) <= mods.loaded(),
        "unfix failed, left the file, or unloaded modules",
        un.stdout + un.stderr,
    )


def compress_tree(names: list[str]) -> list[str]:
    """Turn NAMES' files into .ko.xz (what a 6.1 kernel cannot decompress) and re-run depmod."""
    errors = []
    for name in names:
        path = module_file(name)
        if path.name.endswith(".ko"):
            write_image(path.with_name(path.name + ".xz"), path.read_bytes())
            path.unlink()
    proc = sh(["depmod", "-a", os.uname().release])
    if proc.returncode != 0:
        errors.append(f"depmod: {proc.stderr.strip()}")
    return errors


def scenario_fix(loaders: list[str]) -> int:
    r = Report()
    problem = profile_data_problem()
    r.check("package/profile-data", not problem, problem)
    err = load_veth()
    r.check("fix/veth-for-probe", not err, err)
    mods = Modules()
    rules = profile_files("istio-sidecar")
    for loader in loaders:
        fix_with(r, mods, loader, rules, f"fix/{loader}")
        errors = mods.unload_all()
        r.check(f"fix/{loader}/unloaded-for-next", not errors, "; ".join(errors))

    # native nftables: the same, with the nft profile and its own modules
    nft_rules = profile_files("istio-sidecar-nftables")
    code, data, text = run_json(
        ["fix", "--profile", "istio-sidecar-nftables", "--loader", loaders[-1], "-o", "json"]
    )
    r.check(
        "fix/nftables/fix-ready",
        code == 0 and data is not None and data["ready"],
        f"exit {code}",
        text,
    )
    res = pod_apply(nft_rules[0])
    r.check(
        "fix/nftables/pod-nft",
        res.returncode == 0,
        f"nft -f exited {res.returncode}",
        res.stdout + res.stderr,
    )
    pcode, probe, text = run_json(["probe", "--profile", "istio-sidecar-nftables", "-o", "json"])
    r.check(
        "fix/nftables/probe",
        pcode == 0 and probe is not None and probe["ok"],
        f"exit {pcode}",
        text,
    )
    meshready(["unfix"])
    r.check("fix/nftables/unloaded", not mods.unload_all(), "rmmod failed")

    # a kernel that cannot decompress (.ko.xz on 6.1): the python loader decompresses itself
    if "python" in loaders and not any(MODDIR.rglob("*.ko.xz")):
        code, data, _ = run_json(["needs", "-o", "json"])
        order = list(data["load_order"]) if data else []
        errs = compress_tree(order)
        r.check("fix/python-xz/compressed", not errs and bool(order), "; ".join(errs))
        code, data, text = run_json(["fix", "--loader", "python", "--no-persist", "-o", "json"])
        r.check(
            "fix/python-xz/fix-ready",
            code == 0 and data is not None and data["ready"] and conf_state() is None,
            f"exit {code}",
            text,
        )
        res = pod_apply(rules[0])
        r.check(
            "fix/python-xz/pod-restore",
            res.returncode == 0,
            f"exit {res.returncode}",
            res.stdout + res.stderr,
        )
    return r.finish()


# --------------------------------------------------------------------------- scenario: reboot


def scenario_reboot() -> int:
    r = Report()
    problem = profile_data_problem()
    r.check("package/profile-data", not problem, problem)
    mods = Modules()
    rules = profile_files("istio-sidecar")
    shipped = WORK / "meshready.conf"
    r.check("reboot/file-from-last-boot", shipped.is_file(), "no meshready.conf in the payload")
    if not shipped.is_file():
        return r.finish()
    r.check("reboot/nothing-loaded", "ip_tables" not in mods.loaded(), "ip_tables already loaded")
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(shipped.read_text())
    # what systemd-modules-load does at boot: every line of /etc/modules-load.d/*.conf through
    # libkmod's probe with the blacklist applied (= modprobe -b NAME)
    failed = []
    for conf in sorted(CONF.parent.glob("*.conf")):
        for line in conf.read_text().splitlines():
            name = line.strip()
            if not name or name.startswith(("#", ";")):
                continue
            proc = sh(["modprobe", "-b", name])
            if proc.returncode != 0:
                failed.append(f"{name}: {proc.stderr.strip()}")
    r.check("reboot/modules-load-applied", not failed, "modprobe failed", "\n".join(failed))
    for rule in [*rules, SHARED_RULE, SHARED_RULE_V6]:
        res = pod_apply(rule)
        r.check(
            f"reboot/pod-restore-{rule.name}",
            res.returncode == 0,
            f"the pod's restore exited {res.returncode} after boot (autoload off)",
            res.stdout + res.stderr,
        )
    code, data, text = run_json(["check", "-o", "json"])
    r.check(
        "reboot/check-ready", code == 0 and data is not None and data["ready"], f"exit {code}", text
    )
    code, data, text = run_json(["fix", "-o", "json"])
    r.check(
        "reboot/fix-nothing-to-do",
        code == 0
        and data is not None
        and data["result"] is None
        and CONF.read_text() == shipped.read_text(),
        "fix after the boot changed something",
        text,
    )
    return r.finish()


# --------------------------------------------------------------------------- scenario: errors


def expect_refusal(r: Report, mods: Modules, tag: str, args: list[str], message: str) -> None:
    """meshready fix ARGS must exit 1 with MESSAGE on one line, no file, no module change."""
    before = mods.loaded()
    proc = meshready(["fix", *args])
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    detail = f"exit {proc.returncode}\nstdout:\n{tail(proc.stdout)}\nstderr:\n{tail(proc.stderr)}"
    r.check(
        f"{tag}/message",
        proc.returncode == 1 and len(err_lines) == 1
        and err_lines[0].startswith("meshready: error: ") and message in err_lines[0],
        f"want exit 1 and one line with {message!r}",
        detail,
    )  # fmt: skip
    r.check(f"{tag}/no-file", modules_load_dir_clean(), "a file was left in /etc/modules-load.d")
    after = mods.loaded()
    r.check(
        f"{tag}/no-worse",
        after == before,
        "the loaded modules changed",
        f"added {sorted(after - before)} removed {sorted(before - after)}",
    )
    print(f"    # {err_lines[0] if err_lines else '(no message)'}", flush=True)


def scenario_errors(loaders: list[str]) -> int:
    r = Report()
    problem = profile_data_problem()
    r.check("package/profile-data", not problem, problem)
    mods = Modules()
    r.check("errors/securityfs", mounted_securityfs(), "cannot mount securityfs")

    # 1. module absent on disk (modules.dep still lists it)
    path = module_file("xt_owner")
    saved = path.read_bytes()
    path.unlink()
    for loader in loaders:
        expect_refusal(
            r,
            mods,
            f"errors/absent/{loader}",
            ["--loader", loader],
            "module xt_owner is absent on disk",
        )
    path.write_bytes(saved)

    # 2. read-only /etc
    ro = sh(["sh", "-c", "mount --bind /etc /etc && mount -o remount,ro,bind /etc"])
    r.check("errors/read-only-etc/setup", ro.returncode == 0, ro.stderr)
    expect_refusal(r, mods, "errors/read-only-etc", [], "read-only file system")
    sh(["umount", "/etc"])

    # 3. signature rejected by the kernel, midway: what was loaded is unloaded again
    original = corrupt_signature(path)
    for loader in loaders:
        expect_refusal(
            r, mods, f"errors/signature/{loader}", ["--loader", loader], "rejected its signature"
        )
    path.write_bytes(original)

    # 4. lockdown: unsigned modules refused (before anything changes, and by the kernel itself)
    lockdown = Path("/sys/kernel/security/lockdown")
    lockdown.write_text("integrity\n")
    r.check("errors/lockdown/on", "[integrity]" in lockdown.read_text(), lockdown.read_text())
    original = strip_signature(path)
    for loader in loaders:
        expect_refusal(
            r,
            mods,
            f"errors/lockdown/{loader}",
            ["--loader", loader],
            "kernel lockdown (integrity)",
        )
    kernel_says = lockdown_kernel_path(mods, loaders)
    for loader, line in kernel_says.items():
        r.check(
            f"errors/lockdown/kernel-{loader}",
            line.startswith("cannot load xt_owner: kernel lockdown (integrity) refuses it"),
            "unexpected message from the kernel path",
            line,
        )
    path.write_bytes(original)
    r.check("errors/lockdown/no-worse", not mods.unload_all(), "rmmod failed")

    # 5. a security module denies module loading (IMA appraisal: EACCES)
    policy = Path("/sys/kernel/security/ima/policy")
    try:
        policy.write_text("appraise func=MODULE_CHECK appraise_type=imasig\n")
        wrote = True
    except OSError as exc:
        wrote = False
        r.check("errors/lsm/policy", False, f"cannot write the IMA policy: {exc}")
    if wrote:
        for loader in loaders:
            expect_refusal(
                r, mods, f"errors/lsm/{loader}", ["--loader", loader], "denied by a security module"
            )

    # 6. kernel.modules_disabled=1 (last: it cannot be undone)
    Path("/proc/sys/kernel/modules_disabled").write_text("1\n")
    expect_refusal(r, mods, "errors/modules-disabled", [], "kernel.modules_disabled=1")
    return r.finish()


def lockdown_kernel_path(mods: Modules, loaders: list[str]) -> dict[str, str]:
    """Each loader asked directly for the unsigned module (dependencies loaded first)."""
    from meshready.actions.loader import LoaderKind, choose_loader
    from meshready.errors import ActionError
    from meshready.host.facts import gather_live
    from meshready.host.root import HostRoot

    root = HostRoot()
    index = gather_live(root).index
    assert index is not None
    mods.insmod(mods.order({"x_tables"}))
    out = {}
    for loader in loaders:
        try:
            choose_loader(LoaderKind(loader), root).load("xt_owner", index, root)
            out[loader] = "loaded (no refusal)"
        except ActionError as exc:
            out[loader] = exc.one_line()
    return out


# --------------------------------------------------------------------------- benchmark


def scenario_bench(rounds: int) -> int:
    from meshready.actions.loader import LoaderKind, choose_loader
    from meshready.host.facts import gather_live
    from meshready.host.root import HostRoot

    r = Report()
    problem = profile_data_problem()
    r.check("package/profile-data", not problem, problem)
    mods = Modules()
    _, data, _ = run_json(["needs", "-o", "json"])
    order = [str(m) for m in data["load_order"]] if data else []
    r.check("bench/istio-set", bool(order), "no load order")
    root = HostRoot()
    index = gather_live(root).index
    assert index is not None
    arch = os.uname().machine
    results: dict[str, list[float]] = {}

    def measure(label: str, action: Any) -> None:
        times = []
        for _ in range(rounds):
            errors = mods.unload_all()
            if errors:
                r.check(f"bench/{label}/unload", False, "; ".join(errors))
                return
            t0 = time.perf_counter()
            action()
            times.append(time.perf_counter() - t0)
            missing = sorted(set(order) - mods.loaded())
            if missing:
                r.check(f"bench/{label}/loaded", False, f"not loaded: {missing}")
                return
        results[label] = times
        r.check(f"bench/{label}", True)

    measure("kmod modprobe -a", lambda: sh(["modprobe", "-a", *order]))
    measure("kmod modprobe per module", lambda: [sh(["modprobe", m]) for m in order])
    for name in ("modprobe", "python"):
        loader = choose_loader(LoaderKind(name), root)
        measure(
            f"meshready {name} loader",
            lambda loader=loader: [loader.load(m, index, root) for m in order],
        )
    measure(
        "meshready fix --loader python (CLI)",
        lambda: meshready(["fix", "--loader", "python", "--no-persist"]),
    )
    for label, times in results.items():
        best, mean = min(times), sum(times) / len(times)
        print(
            f"BENCH {arch} {os.uname().release} | {label} | {len(order)} modules | best {best * 1000:.0f} ms | mean {mean * 1000:.0f} ms | n={len(times)}",
            flush=True,
        )
    return r.finish()


def main() -> int:
    what, args = sys.argv[1], sys.argv[2:]
    if what == "fix":
        return scenario_fix(args or ["modprobe", "python"])
    if what == "reboot":
        return scenario_reboot()
    if what == "errors":
        return scenario_errors(args or ["modprobe", "python"])
    if what == "bench":
        return scenario_bench(int(args[0]) if args else 3)
    print(f"unknown scenario {what}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
