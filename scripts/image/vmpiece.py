"""An initramfs piece that puts a built image and an OCI runtime into the qemu test guests.

    piece(image, arch) -> $CACHE/images/vm/<image>-<arch>-<key>.cpio (uncompressed newc)

Contents, appended after the guest's own pieces (scripts/vm/vmlib.py; uncompressed cpio pieces
concatenate, later entries win):

  /meshready-vm/image/rootfs/      the image's root filesystem, unpacked from its docker-archive
                                   (layers in order, whiteouts applied)
  /meshready-vm/image/image.json   the build record (scripts/image/build)
  /usr/sbin/runc, libseccomp       Debian bookworm's runc and its libseccomp for ARCH

Keyed by the image's key and the runc and libseccomp2 packages.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import imagelib
import vmlib

PIECE_RECIPE = "1"
RUNTIME_PACKAGES = ["runc", "libseccomp2"]


def piece_dir() -> Path:
    d = imagelib.images_dir() / "vm"
    d.mkdir(parents=True, exist_ok=True)
    return d


def piece(image: str, arch: str) -> Path:
    """The cpio piece for IMAGE/ARCH; the image must have been built (scripts/image/build)."""
    built = imagelib.cached(image, arch)
    if built is None:
        raise imagelib.ImageError(
            f"the {image} image for {arch} is not built; run scripts/image/build "
            f"--image {image} --arch {arch} (or scripts/build-test-artifacts)"
        )
    with vmlib.locked(piece_dir() / f".{image}-{arch}.lock"):
        with tempfile.TemporaryDirectory(prefix=".rt.", dir=piece_dir()) as tmp:
            runtime = Path(tmp) / "rt"
            debs = imagelib.debian_unpack(arch, RUNTIME_PACKAGES, runtime)
            key = imagelib.sha(PIECE_RECIPE, built.key, *(d.name for d in debs))
            out = piece_dir() / f"{image}-{arch}-{key}.cpio"
            if out.exists():
                return out
            t0 = time.monotonic()
            root = Path(tmp) / "piece"
            image_dir = root / "meshready-vm" / "image"
            imagelib.unpack(built.docker_path, image_dir / "rootfs")
            (image_dir / "image.json").write_text(
                json.dumps({k: v for k, v in vars(built).items() if k != "packages"}, indent=1)
            )
            (root / "usr/sbin").mkdir(parents=True)
            shutil.copy2(runtime / "usr/sbin/runc", root / "usr/sbin/runc")
            for lib in runtime.glob("usr/lib/*/libseccomp.so*"):
                dest = root / lib.relative_to(runtime)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if lib.is_symlink():
                    dest.symlink_to(lib.readlink())
                else:
                    shutil.copy2(lib, dest)
            # rootfs/ keeps its owners and modes (root-owned anyway); write_cpio makes every
            # entry root's, which the image's files already are.
            vmlib.write_cpio(root, out)
        for old in piece_dir().glob(f"{image}-{arch}-*.cpio"):
            if old != out:
                old.unlink()
        imagelib.log(
            f"vm piece {out.name}: {out.stat().st_size >> 20} MiB in {time.monotonic() - t0:.0f}s"
        )
        return out
