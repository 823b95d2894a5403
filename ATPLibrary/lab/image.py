"""The lab's guest image, built from Debian packages only and cached outside the checkout.

Two cache levels, each keyed by a hash of its inputs so that it is rebuilt only when they change:

* ``base-<key>/root``: ``debootstrap --variant=minbase`` with qemu-guest-agent and python3, trimmed and
  byte-compiled (the root is mounted read-only in the guests, so ``__pycache__`` must be there already).
  Key: Debian suite, mirror, the packages and their candidate versions.
* ``image-<key>/``: the Debian cloud kernel, a small busybox initramfs that mounts the root, and
  ``rootfs.ext4`` (the base plus the lab's own PID 1 and scripts from ``guest/``), shared read-only
  by all guests.  Key: the base key, kernel and busybox versions, and the bytes of the recipe.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ATPLibrary.errors import LabError
from ATPLibrary.lab.shell import is_root, run

GUEST_FILES = Path(__file__).with_name("guest")

#: Bump when the build steps below change in a way the hashed inputs do not show.
RECIPE_VERSION = "3"

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
#: Packages debootstrap adds to minbase.  python3 runs the verification agent.
ROOT_INCLUDE = ("qemu-guest-agent", "python3", "procps")
#: Kernel modules the initramfs loads (the cloud kernel has no USB: virtio input only).
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "virtio_input", "evdev", "button")

Log = Callable[[str], None]


@dataclass(frozen=True)
class GuestImage:
    directory: Path
    kernel: Path
    initrd: Path
    rootfs: Path
    key: str
    manifest: dict[str, object]


# ---------------------------------------------------------------- Debian facts


def debian_suite() -> str:
    """The host's Debian codename (the guest uses the same release as the host)."""
    text = Path("/etc/os-release").read_text()
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?", text, re.M)
    if not m:
        raise LabError("cannot tell the Debian release from /etc/os-release (no VERSION_CODENAME)")
    return m.group(1)


def debian_mirror() -> str:
    """The host's main Debian mirror from its apt sources (debootstrap does not read them itself)."""
    candidates: list[str] = []
    sources = Path("/etc/apt/sources.list.d")
    for f in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        block_uris: list[str] = []
        for line in f.read_text().splitlines():
            if line.startswith("URIs:"):
                block_uris = line.split(":", 1)[1].split()
            elif line.startswith("Suites:") and block_uris:
                suites = line.split(":", 1)[1].split()
                if any(not s.endswith(("-security", "-updates", "-backports")) for s in suites):
                    candidates.extend(block_uris)
                block_uris = []
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and not parts[2].endswith(("-security", "-updates")):
                uri = next((p for p in parts[1:] if "://" in p), "")
                if uri:
                    candidates.append(uri)
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise LabError("no Debian mirror found in /etc/apt/sources.list(.d); set ATP_DEBIAN_MIRROR to a mirror URL")


def candidate_version(package: str) -> str:
    proc = run(["apt-cache", "policy", package], timeout=60, check=False)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    if not m or m.group(1) == "(none)":
        raise LabError(f"apt knows no installable version of {package}; run `apt-get update` (as root) and retry")
    return m.group(1)


def kernel_package() -> str:
    proc = run(["apt-cache", "depends", KERNEL_META_PACKAGE], timeout=60, check=False)
    m = re.search(r"Depends:\s*(linux-image-\S+)", proc.stdout)
    if not m:
        raise LabError(f"apt cannot resolve {KERNEL_META_PACKAGE}; run `apt-get update` (as root) and retry")
    return m.group(1)


def _ensure_apt_lists(log: Log) -> None:
    try:
        candidate_version(KERNEL_META_PACKAGE)
        return
    except LabError:
        pass
    if not is_root():
        raise LabError("apt's package lists are empty: run `apt-get update` as root")
    log("apt-get update (package lists are empty)")
    run(["apt-get", "update", "-q"], timeout=300)


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _recipe_digest() -> dict[str, str]:
    from ATPLibrary.agent.package import agent_sources

    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(GUEST_FILES.iterdir())}
    digest["image.py"] = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    agent = hashlib.sha256()
    for name, source in sorted(agent_sources().items()):
        agent.update(name.encode() + b"\0" + source.read_bytes())
    digest["verification-agent"] = agent.hexdigest()  # the image carries the agent: rebuild when it changes
    return digest


# ---------------------------------------------------------------- build


def ensure_image(lab: Path, log: Log) -> GuestImage:
    """Return the current guest image, building what is missing or stale."""
    _ensure_apt_lists(log)
    suite = debian_suite()
    mirror = os.environ.get("ATP_DEBIAN_MIRROR") or debian_mirror()
    kpkg = kernel_package()
    versions = {p: candidate_version(p) for p in (*ROOT_INCLUDE, "busybox-static", kpkg)}
    base_inputs = {
        "suite": suite,
        "mirror": mirror,
        "include": list(ROOT_INCLUDE),
        "versions": {p: versions[p] for p in ROOT_INCLUDE},
        "recipe": RECIPE_VERSION,
    }
    base_key = _hash(base_inputs)
    image_inputs = {
        "base": base_key,
        "kernel": [kpkg, versions[kpkg]],
        "busybox": versions["busybox-static"],
        "modules": list(INITRAMFS_MODULES),
        "recipe": _recipe_digest(),
    }
    key = _hash(image_inputs)
    image_dir = lab / f"image-{key}"
    manifest_path = image_dir / "manifest.json"
    if manifest_path.exists():
        return _image(image_dir, key)

    if not is_root():
        raise LabError("building the guest image needs root (debootstrap, chroot); run `atp lab up` as root")
    base_root = _ensure_base(lab, base_key, suite, mirror, log)
    started = time.monotonic()
    tmp = lab / f".image-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    debs = _download(lab, [kpkg, "busybox-static"], log)
    kroot = tmp / "kernel"
    run(["dpkg-deb", "-x", str(debs[kpkg]), str(kroot)], timeout=300)
    kver = kpkg.removeprefix("linux-image-")
    vmlinuz = next(kroot.glob(f"boot/vmlinuz-{kver}"), None)
    if vmlinuz is None:
        raise LabError(f"{debs[kpkg].name} holds no boot/vmlinuz-{kver}")
    shutil.copy2(vmlinuz, tmp / "vmlinuz")
    log("building the initramfs")
    _build_initramfs(tmp, kroot, kver, debs["busybox-static"])
    shutil.rmtree(kroot)
    log("building rootfs.ext4")
    _build_rootfs(tmp, base_root)
    manifest = {"key": key, "inputs": image_inputs, "base_inputs": base_inputs, "built": time.time()}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if image_dir.exists():
        shutil.rmtree(image_dir)
    tmp.rename(image_dir)
    log(f"guest image {key} ready in {time.monotonic() - started:.1f} s")
    return _image(image_dir, key)


def _image(directory: Path, key: str) -> GuestImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return GuestImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.cpio.gz",
        rootfs=directory / "rootfs.ext4",
        key=key,
        manifest=manifest,
    )


def prune_images(lab: Path, keep: set[Path]) -> list[Path]:
    """Remove image and base folders that are not in ``keep`` (the caller keeps what domains still use)."""
    removed = []
    current_bases = {
        str(json.loads((k / "manifest.json").read_text())["inputs"]["base"])
        for k in keep
        if (k / "manifest.json").exists()
    }
    for d in lab.glob("image-*"):
        if d not in keep:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    for d in lab.glob("base-*"):
        if d.name.removeprefix("base-") not in current_bases:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _download(lab: Path, packages: list[str], log: Log) -> dict[str, Path]:
    debs_dir = lab / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for pkg in packages:
        version = candidate_version(pkg).replace(":", "%3a")
        deb = next(debs_dir.glob(f"{pkg}_{version}_*.deb"), None)
        if deb is None:
            log(f"apt-get download {pkg}")
            _retry(functools.partial(run, ["apt-get", "download", "-q", pkg], timeout=300, cwd=debs_dir), 3, log)
            deb = next(debs_dir.glob(f"{pkg}_{version}_*.deb"), None)
            if deb is None:
                raise LabError(f"apt-get download {pkg} left no {pkg}_{version}_*.deb in {debs_dir}")
        found[pkg] = deb
    return found


def _retry(fn: Callable[[], object], attempts: int, log: Log) -> None:
    for i in range(attempts):
        try:
            fn()
            return
        except LabError as exc:
            if i == attempts - 1:
                raise
            log(f"retrying after: {str(exc).splitlines()[0]}")
            time.sleep(2 * (i + 1))


def _ensure_base(lab: Path, key: str, suite: str, mirror: str, log: Log) -> Path:
    base = lab / f"base-{key}"
    root = base / "root"
    if (base / "done").exists():
        return root
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    log(f"debootstrap {suite} (minbase + {', '.join(ROOT_INCLUDE)}); takes about 40 s")
    started = time.monotonic()

    def bootstrap() -> None:
        shutil.rmtree(root, ignore_errors=True)
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(ROOT_INCLUDE)}", suite, str(root), mirror],
            timeout=900,
        )

    _retry(bootstrap, 3, log)
    _trim(root)
    log("byte-compiling Python in the guest root")
    pydirs = ["/" + p.relative_to(root).as_posix() for p in sorted(root.glob("usr/lib/python3*")) if p.is_dir()]
    run(
        [
            "chroot",
            str(root),
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            *pydirs,
        ],
        timeout=600,
        check=False,  # a stray file with old syntax must not stop the build; the rest is compiled
    )
    (base / "done").write_text(f"{time.monotonic() - started:.1f}\n")
    return root


def _trim(root: Path) -> None:
    for rel in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/lintian",
        "var/cache/apt",
        "var/lib/apt/lists",
        "var/cache/debconf",
    ):
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p)
            p.mkdir()


def _build_initramfs(out: Path, kroot: Path, kver: str, busybox_deb: Path) -> None:
    run(["depmod", "-b", str(kroot), kver], timeout=120)
    order: list[Path] = []
    for mod in INITRAMFS_MODULES:
        proc = run(["modprobe", "-d", str(kroot), "-S", kver, "--show-depends", mod], timeout=60)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                ko = Path(parts[1])
                if ko not in order:
                    order.append(ko)
    stage = out / "initramfs"
    for d in ("bin", "dev", "proc", "sys", "newroot", "mods"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    bb = out / "busybox"
    run(["dpkg-deb", "-x", str(busybox_deb), str(bb)], timeout=120)
    shutil.copy2(bb / "bin" / "busybox", stage / "bin" / "busybox")
    shutil.rmtree(bb)
    names = []
    for ko in order:
        name = ko.name
        data = ko.read_bytes()
        if name.endswith(".xz"):
            data, name = lzma.decompress(data), name.removesuffix(".xz")
        (stage / "mods" / name).write_bytes(data)
        names.append(name)
    (stage / "mods" / "order").write_text("\n".join(names) + "\n")
    init = stage / "init"
    shutil.copy2(GUEST_FILES / "initramfs-init", init)
    init.chmod(0o755)
    os.mknod(stage / "dev" / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    listing = subprocess.run(
        "find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0",
        shell=True,
        cwd=stage,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if listing.returncode != 0:
        raise LabError(f"cpio failed building the initramfs: {listing.stderr.decode(errors='replace')}")
    (out / "initrd.cpio.gz").write_bytes(gzip.compress(listing.stdout, compresslevel=6))
    shutil.rmtree(stage)


def _install(src: str, dest: Path, mode: int = 0o755) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST_FILES / src, dest)
    dest.chmod(mode)


def _build_rootfs(out: Path, base_root: Path) -> None:
    stage = out / "root"
    run(["cp", "-a", str(base_root), str(stage)], timeout=300)
    sbin = stage / "usr" / "sbin"
    _install("atp-init", sbin / "atp-init")
    _install("shutdown", sbin / "shutdown")
    for alias in ("poweroff", "halt", "reboot"):
        link = sbin / alias
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("shutdown")
    _install("atp-console.sh", stage / "etc" / "profile.d" / "atp-console.sh", 0o644)
    (stage / "etc" / "atp" / "init.d").mkdir(parents=True, exist_ok=True)
    _install("50-verification-agent", stage / "etc" / "atp" / "init.d" / "50-verification-agent")
    from ATPLibrary.agent.package import build_zip

    agent_dir = stage / "usr" / "local" / "lib" / "atp"
    agent_dir.mkdir(parents=True, exist_ok=True)
    build_zip(agent_dir).chmod(0o644)
    (stage / "etc" / "hostname").write_text("atp-lab\n")
    used_mb = int(run(["du", "-sm", str(stage)], timeout=120).stdout.split()[0])
    size_mb = used_mb + used_mb // 3 + 48
    run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-d",
            str(stage),
            "-L",
            "atproot",
            "-O",
            "^has_journal",
            "-m",
            "0",
            str(out / "rootfs.ext4"),
            f"{size_mb}M",
        ],
        timeout=300,
    )
    shutil.rmtree(stage)
