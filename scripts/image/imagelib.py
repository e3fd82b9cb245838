"""Build the meshready images without a Docker daemon (scripts/image/build is the command line).

Python 3 standard library only, plus Debian's mmdebstrap and buildah. Everything lands in
$CACHE/images ($CACHE as in scripts/vm/vmlib.py: $MESHREADY_CACHE, else $XDG_CACHE_HOME/meshready,
else ~/.cache/meshready), keyed by its inputs, and is reused when warm:

  base/debian-bookworm-slim-<arch>-<key>.tar   mmdebstrap minbase with bookworm-slim's dpkg
                                               excludes: the stand-in for debian:bookworm-slim
                                               (key: recipe, arch, the Debian archive snapshot
                                               this machine's apt lists describe)
  <image>-<arch>-<key>.docker.tar              docker-archive (uncompressed layers; `ctr images
                                               import`, `docker load`, `podman load`)
  <image>-<arch>-<key>.oci.tar                 oci-archive of the same image
  <image>-<arch>-<key>.json                    what was built: ref, archives, image id, layer and
                                               rootfs sizes, Debian packages, build seconds
  <image>-<arch>.json                          the newest build of that image and arch (same text)
  buildah/                                     buildah's own store (--storage-driver vfs)

Image keys cover the Containerfile, the files it copies (pyproject.toml, README.md, src/,
requirements/), the base's key and the recipe version. Images: `agent` (the Containerfile at the
repository root) and `mesh-init` (scripts/image/mesh-init.Containerfile: Debian bookworm with
iptables, what a mesh's init container needs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "vm"))
import vmlib  # noqa: E402  (cache_dir, locking, the host's Debian sources)

ARCHES = ("amd64", "arm64")
IMAGES = ("agent", "mesh-init")
VERSION = "0.1.0"
# Bump when the way an image or the base is made changes (not its inputs, which are hashed).
BASE_RECIPE = "1"
IMAGE_RECIPE = "1"
# debian:bookworm-slim's dpkg configuration (debuerreotype's "slimify"): no docs, man pages,
# locales; the copyright files stay.
SLIM_DPKG = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]
CONTEXT_FILES = {
    "agent": ["Containerfile", "pyproject.toml", "README.md", "src", "requirements"],
    "mesh-init": ["scripts/image/mesh-init.Containerfile"],
}
CONTAINERFILE = {"agent": "Containerfile", "mesh-init": "scripts/image/mesh-init.Containerfile"}
REPOSITORY = {"agent": "localhost/meshready", "mesh-init": "localhost/meshready-mesh-init"}
BUILD_TIMEOUT = 3600


class ImageError(Exception):
    """A prerequisite is missing or a build step failed."""


def log(msg: str) -> None:
    print(f"image: {msg}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    d = vmlib.cache_dir() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def host_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def run(cmd: Sequence[str], what: str, timeout: float = BUILD_TIMEOUT, **kw: object) -> str:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{what}: timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-4000:]).strip()
        raise ImageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return str(proc.stdout)


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found (scripts/install-test-deps installs it)")


# --------------------------------------------------------------------------- foreign arches


def can_run(arch: str) -> bool:
    """Whether this machine runs ARCH binaries: natively, or through a binfmt_misc handler."""
    if arch == host_arch():
        return True
    name = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[arch]
    try:
        return Path(f"/proc/sys/fs/binfmt_misc/{name}").read_text().startswith("enabled")
    except OSError:
        return False


def register_binfmt(arch: str) -> str:
    """Register qemu-user-static for ARCH with binfmt_misc (flag F: the interpreter is opened
    now, so it works inside build chroots). Returns what was done, or raises ImageError."""
    if can_run(arch):
        return "already runnable"
    need(f"qemu-{'aarch64' if arch == 'arm64' else 'x86_64'}-static")
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], check=False)
    qname = "qemu-aarch64" if arch == "arm64" else "qemu-x86_64"
    conf = Path(f"/usr/lib/binfmt.d/{qname}.conf")
    try:
        fields = conf.read_text().strip().split(":")
    except OSError as exc:
        raise ImageError(f"{conf} missing (Debian package qemu-user-static)") from exc
    # :name:type:offset:magic:mask:interpreter:flags
    fields[6] = shutil.which(f"{qname}-static") or f"/usr/bin/{qname}-static"
    fields[7] = "F"
    try:
        (misc / "register").write_text(":".join(fields))
    except OSError as exc:
        raise ImageError(f"cannot register {qname} with binfmt_misc here: {exc}") from exc
    if not can_run(arch):
        raise ImageError(f"registered {qname} with binfmt_misc but {arch} still does not run")
    return f"registered {qname} ({fields[6]}, flags F)"


def debian_unpack(arch: str, packages: Sequence[str], dest: Path) -> list[Path]:
    """`apt-get download` PACKAGES (name or name=version) for ARCH through a private apt state
    under $CACHE/images/apt/ARCH (the host's dpkg architectures untouched) and `dpkg-deb -x` them
    into DEST; returns the .deb files (kept beside the state)."""
    apt = images_dir() / "apt" / arch
    debs = apt / "debs"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    debs.mkdir(parents=True, exist_ok=True)
    status = apt / "status"
    status.touch()
    opts = [
        "-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}",
        "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", f"Dir::State::status={status}",
    ]  # fmt: skip
    with vmlib.locked(apt / ".lock"):
        if not any((apt / "lists").glob("*Packages*")):
            run(["apt-get", *opts, "update", "-qq"], f"apt-get update ({arch})", timeout=600)
        names = [p.split("=")[0] for p in packages]
        have = {n: sorted(debs.glob(f"{n}_*_{arch}.deb")) for n in names}
        missing = [p for p in packages if not have[p.split("=")[0]]]
        if missing:
            run(["apt-get", *opts, "download", *(f"{p.split('=')[0]}:{arch}" + (
                f"={p.split('=', 1)[1]}" if "=" in p else "") for p in missing)],
                f"apt-get download ({arch})", timeout=600, cwd=str(debs))  # fmt: skip
        files = [sorted(debs.glob(f"{n}_*_{arch}.deb"))[-1] for n in names]
    dest.mkdir(parents=True, exist_ok=True)
    for deb in files:
        run(["dpkg-deb", "-x", str(deb), str(dest)], f"dpkg-deb -x {deb.name}")
    return files


# --------------------------------------------------------------------------- keys


def sha(*parts: str | bytes) -> str:
    return vmlib.sha(*parts)


def debian_snapshot() -> str:
    """The Debian archive state this machine's apt lists describe (their bookworm Release files):
    a new point release or security update changes it, and with it every image key."""
    lists = sorted(Path("/var/lib/apt/lists").glob("*bookworm*Release"))
    h = hashlib.sha256()
    for f in lists:
        if f.name.endswith("InRelease") or f.name.endswith("_Release"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16] if lists else "no-apt-lists"


def tree_hash(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for rel in paths:
        base = REPO / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        if not files:
            raise ImageError(f"{rel}: missing")
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            if any(part.endswith(".egg-info") for part in f.parts):
                continue
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def base_key(arch: str) -> str:
    return sha(BASE_RECIPE, arch, *SLIM_DPKG, debian_snapshot())


def image_key(image: str, arch: str) -> str:
    return sha(IMAGE_RECIPE, image, arch, base_key(arch), tree_hash(CONTEXT_FILES[image]))


# --------------------------------------------------------------------------- buildah


def buildah(*args: str, what: str, timeout: float = BUILD_TIMEOUT) -> str:
    store = images_dir() / "buildah"
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "TMPDIR": str(store / "tmp")}
    (store / "tmp").mkdir(parents=True, exist_ok=True)
    cmd = [
        "buildah",
        "--root", str(store / "root"),
        "--runroot", str(store / "runroot"),
        "--storage-driver", "vfs",
        *args,
    ]  # fmt: skip
    return run(cmd, what, timeout=timeout, env=env)


def buildah_has(ref: str) -> bool:
    try:
        buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, what="inspect")
    except ImageError:
        return False
    return True


# --------------------------------------------------------------------------- base


def base_tar(arch: str) -> Path:
    return images_dir() / "base" / f"debian-bookworm-slim-{arch}-{base_key(arch)}.tar"


def base_ref(arch: str) -> str:
    return f"localhost/meshready-base/debian:bookworm-slim-{arch}-{base_key(arch)}"


def build_base(arch: str) -> str:
    """The debian:bookworm-slim stand-in for ARCH in buildah's store; returns its ref."""
    out = base_tar(arch)
    ref = base_ref(arch)
    with vmlib.locked(images_dir() / f".base-{arch}.lock"):
        if not out.exists():
            need("mmdebstrap")
            if not can_run(arch):
                raise ImageError(f"{arch} binaries do not run here: {register_binfmt(arch)}")
            t0 = time.monotonic()
            log(f"making the {arch} debian:bookworm-slim stand-in (mmdebstrap minbase)")
            out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".base.", dir=out.parent) as tmp:
                sources = vmlib.host_debian_sources(Path(tmp) / "debian.sources")
                tmp_tar = Path(tmp) / "base.tar"
                cmd = [
                    "mmdebstrap", "--quiet", "--variant=minbase", f"--architectures={arch}",
                    "--format=tar", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    *(f"--dpkgopt={o}" for o in SLIM_DPKG),
                    "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin"
                    " \"$1\"/var/log/apt/* \"$1\"/var/log/dpkg.log \"$1\"/var/log/alternatives.log",
                    "bookworm", str(tmp_tar), str(sources),
                ]  # fmt: skip
                run(cmd, f"mmdebstrap ({arch})", timeout=1800)
                tmp_tar.rename(out)
            for old in out.parent.glob(f"debian-bookworm-slim-{arch}-*.tar"):
                if old != out:
                    old.unlink()
            log(f"{arch} base: {out.name} ({out.stat().st_size >> 20} MiB) "
                f"in {time.monotonic() - t0:.0f}s")  # fmt: skip
        if not buildah_has(ref):
            ctr = buildah("from", "--arch", arch, "scratch", what="buildah from scratch").strip()
            try:
                buildah("add", ctr, str(out), "/", what="buildah add (base)")
                buildah(
                    "config", "--os", "linux", "--arch", arch, "--cmd", "bash",
                    "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    ctr, what="buildah config (base)",
                )  # fmt: skip
                buildah("commit", "--quiet", ctr, ref, what="buildah commit (base)")
            finally:
                with contextlib.suppress(ImageError):
                    buildah("rm", ctr, what="buildah rm")
    return ref


# --------------------------------------------------------------------------- images


@dataclass
class Built:
    image: str
    arch: str
    key: str
    ref: str
    docker_archive: str
    oci_archive: str
    image_id: str
    layers_bytes: int  # sum of the uncompressed layer tars: the image's uncompressed size
    rootfs_bytes: int  # the unpacked root filesystem's regular files
    packages: dict[str, str]
    build_seconds: float
    built_at: float

    @property
    def docker_path(self) -> Path:
        return Path(self.docker_archive)


def paths(image: str, arch: str) -> tuple[Path, Path, Path]:
    key = image_key(image, arch)
    d = images_dir()
    stem = f"{image}-{arch}-{key}"
    return d / f"{stem}.docker.tar", d / f"{stem}.oci.tar", d / f"{stem}.json"


def ref_for(image: str, arch: str) -> str:
    return f"{REPOSITORY[image]}:{VERSION}-{arch}-{image_key(image, arch)[:10]}"


def cached(image: str, arch: str) -> Built | None:
    docker, oci, meta = paths(image, arch)
    if not (docker.exists() and oci.exists() and meta.exists()):
        return None
    return Built(**json.loads(meta.read_text()))


def make_context(image: str, dest: Path) -> None:
    for rel in CONTEXT_FILES[image]:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(
                src,
                dest / rel,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
            )
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def build(image: str, arch: str, force: bool = False) -> Built:
    """Build IMAGE for ARCH (or reuse the cached archives); see the module docstring."""
    if image not in IMAGES:
        raise ImageError(f"unknown image {image!r} (choose from {', '.join(IMAGES)})")
    if arch not in ARCHES:
        raise ImageError(f"unknown arch {arch!r} (choose from {', '.join(ARCHES)})")
    need("buildah")
    docker, oci, meta = paths(image, arch)
    with vmlib.locked(images_dir() / f".{image}-{arch}.lock"):
        hit = None if force else cached(image, arch)
        if hit is not None:
            write_latest(hit)
            return hit
        t0 = time.monotonic()
        target_base = build_base(arch)
        build_base_ref = build_base(host_arch())
        ref = ref_for(image, arch)
        log(f"building {ref} (buildah, {arch})")
        with tempfile.TemporaryDirectory(prefix=f".ctx-{image}.", dir=images_dir()) as tmp:
            ctx = Path(tmp) / "ctx"
            ctx.mkdir()
            make_context(image, ctx)
            buildah(
                "build", "--quiet", "--pull=never", "--isolation", "chroot",
                "--network", "host",
                # Not --platform: buildah 1.28 resolves every FROM, `FROM --platform=$BUILDPLATFORM`
                # included, for the global platform, and finds no local amd64 base for an arm64
                # build. The image takes its arch from the final stage's base instead.
                "--build-arg", f"TARGETARCH={arch}",
                "--build-arg", f"BASE={target_base}",
                "--build-arg", f"BUILD_BASE={build_base_ref}",
                "--build-arg", f"VERSION={VERSION}",
                *pip_ca_secret(),
                "-f", str(ctx / CONTAINERFILE[image]), "-t", ref, str(ctx),
                what=f"buildah build {image} ({arch})",
            )  # fmt: skip
            for f in (docker, oci):
                f.unlink(missing_ok=True)
            tmp_docker = docker.with_name(docker.name + ".tmp")
            tmp_oci = oci.with_name(oci.name + ".tmp")
            tmp_docker.unlink(missing_ok=True)
            tmp_oci.unlink(missing_ok=True)
            buildah("push", "--quiet", ref, f"docker-archive:{tmp_docker}:{ref}", what="push")
            buildah("push", "--quiet", ref, f"oci-archive:{tmp_oci}:{ref}", what="push")
            image_id = buildah(
                "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, what="inspect"
            ).strip()
            # Keep buildah's vfs store small: every layer there is a full copy of the tree.
            with contextlib.suppress(ImageError):
                buildah("rmi", ref, what="rmi")
            with contextlib.suppress(ImageError):
                buildah("rmi", "--prune", what="rmi --prune")
            tmp_docker.rename(docker)
            tmp_oci.rename(oci)
        layers, rootfs, packages = measure(docker)
        built = Built(
            image=image, arch=arch, key=image_key(image, arch), ref=ref,
            docker_archive=str(docker), oci_archive=str(oci), image_id=image_id,
            layers_bytes=layers, rootfs_bytes=rootfs, packages=packages,
            build_seconds=round(time.monotonic() - t0, 1), built_at=time.time(),
        )  # fmt: skip
        meta.write_text(json.dumps(asdict(built), indent=1, sort_keys=True) + "\n")
        for old in images_dir().glob(f"{image}-{arch}-*"):
            if old.name.split(".")[0] != docker.name.split(".")[0] and old.is_file():
                old.unlink()
        write_latest(built)
        log(f"{ref}: {layers / 1e6:.1f} MB uncompressed, built in {built.build_seconds:.0f}s")
        return built


def pip_ca_secret() -> list[str]:
    """This machine's CA bundle for pip in the build, as a build secret (not kept in any layer):
    needed where a TLS-inspecting proxy sits between here and PyPI; harmless elsewhere."""
    for env in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(env, "")
        if path and Path(path).is_file():
            return ["--secret", f"id=pip-ca,src={path}"]
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return ["--secret", f"id=pip-ca,src={default}"] if default.is_file() else []


def write_latest(built: Built) -> None:
    latest = images_dir() / f"{built.image}-{built.arch}.json"
    text = json.dumps(asdict(built), indent=1, sort_keys=True) + "\n"
    if not latest.exists() or latest.read_text() != text:
        tmp = latest.with_name(latest.name + ".tmp")
        tmp.write_text(text)
        tmp.rename(latest)


# --------------------------------------------------------------------------- reading archives


def docker_layers(archive: Path) -> tuple[tarfile.TarFile, list[str]]:
    tf = tarfile.open(archive)  # noqa: SIM115 (returned to the caller, who closes it)
    member = tf.extractfile("manifest.json")
    if member is None:
        raise ImageError(f"{archive}: no manifest.json")
    manifest = json.loads(member.read())
    return tf, list(manifest[0]["Layers"])


def measure(archive: Path) -> tuple[int, int, dict[str, str]]:
    """(uncompressed layer bytes, regular-file bytes of the final tree, Debian packages)."""
    tf, layers = docker_layers(archive)
    with tf:
        layer_bytes = sum(tf.getmember(name).size for name in layers)
    with tempfile.TemporaryDirectory(prefix=".measure.", dir=images_dir()) as tmp:
        root = Path(tmp) / "root"
        unpack(archive, root)
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                if p.is_file() and not p.is_symlink():
                    total += p.stat().st_size
        packages = dpkg_versions(root / "var/lib/dpkg/status")
    return layer_bytes, total, packages


def dpkg_versions(status: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = status.read_text()
    except OSError:
        return out
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields and "installed" in fields.get("Status", ""):
            out[fields["Package"]] = fields.get("Version", "")
    return dict(sorted(out.items()))


def unpack(archive: Path, root: Path) -> None:
    """Unpack the image's layers in order into ROOT (as root: owners and modes kept), applying
    OCI whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory)."""
    root.mkdir(parents=True, exist_ok=True)
    tf, layers = docker_layers(archive)
    with tf:
        for name in layers:
            blob = tf.extractfile(name)
            if blob is None:
                raise ImageError(f"{archive}: layer {name} missing")
            with tarfile.open(fileobj=blob, mode="r|*") as layer:
                for m in layer:
                    name = m.name
                    while name.startswith("./"):
                        name = name[2:]
                    rel = Path(name) if name not in ("", ".") else Path()
                    if any(part == ".." for part in rel.parts):
                        raise ImageError(f"{archive}: unsafe path {m.name!r}")
                    base = rel.name
                    if base == ".wh..wh..opq":
                        d = root / rel.parent
                        if d.is_dir():
                            for child in d.iterdir():
                                remove(child)
                        continue
                    if base.startswith(".wh."):
                        remove(root / rel.parent / base[4:])
                        continue
                    target = root / rel
                    keep_dir = m.isdir() and target.is_dir() and not target.is_symlink()
                    if (target.exists() or target.is_symlink()) and not keep_dir:
                        remove(target)
                    layer.extract(m, root, set_attrs=True, filter="fully_trusted")


def remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=".rootfs.", dir=images_dir()) as tmp:
        root = Path(tmp) / "rootfs"
        unpack(archive, root)
        yield root
