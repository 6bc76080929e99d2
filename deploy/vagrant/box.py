"""Build the offline Vagrant box: Debian 12 with everything kctl needs baked in.

Guests of the offline lab have no route out of their isolated networks, so the
box carries all that `deploy/install.sh` and the systemd units use: kctl's
Debian packages (etcd-server, runc, conmon, skopeo, docker-registry, ...),
python3-venv, and a *wheelhouse* of kctl's pinned Python dependencies
(`/var/lib/kctl/wheelhouse`; provision.sh hands it to install.sh as
KCTL_WHEELHOUSE, which then installs with `pip --no-index`). The wheels are
also installed, at build time and at native speed (a chroot), into
`/opt/kctl/.venv`, the venv install.sh uses in the VM: there pip then only
adds kctl itself (editable), since Python under TCG runs ~10x slower and
installing numpy, grpcio, ... there took minutes. (Vagrant's rsync of the
checkout to /opt/kctl excludes .venv/, so the venv survives it.)

How, without loop devices, a hypervisor or network in the guest:

1. `pip download --only-binary=:all:` of pyproject.toml's pins (+ setuptools
   and wheel, the editable install's build backend) on the host: the host's
   Python is Debian 12's, like the guest's.
2. `mmdebstrap --variant=minbase` into a directory from the apt mirrors this
   machine reaches (docs, man pages and locales left out), then plain file
   edits: fstab by UUID, systemd-networkd DHCP on eth0 (Vagrant's Debian
   guest plugin sees networkd and adds its own files for private networks),
   an empty machine-id (each VM makes its own, so their DHCP client ids
   differ), SSH host keys made on first boot, the `vagrant` user with
   Vagrant's insecure public key (Debian's vagrant package) and passwordless
   sudo.
3. A sparse raw disk: `sfdisk` (one bootable partition at 1 MiB),
   `mke2fs -d` writes the tree into it at that offset, GRUB for BIOS by hand:
   `grub-mkimage` (i386-pc, prefix (hd0,msdos1)/boot/grub), boot.img into
   the MBR and core.img right after it (mkimage's default block list already
   points at sector 2, so no grub-bios-setup and no loop device is needed).
4. `qemu-img convert -c` to compressed qcow2 and a tar with `metadata.json`
   (provider libvirt, format qcow2) and a `Vagrantfile`: a libvirt box.

The result is cached under KCTL_VAGRANT_CACHE (/var/cache/kctl-vagrant) by a
hash of every input (this file, the package list, the mirrors, the pins, the
key): `python -m deploy.vagrant box` rebuilds only when one changed, and
writes `box.json` (name, path, hash) which the Vagrantfile and the wrapper
read.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

from machinery.errors import HostError

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KCTL_VAGRANT_CACHE", "/var/cache/kctl-vagrant"))
SUITE = "bookworm"
MIRRORS = os.environ.get("KCTL_BOX_MIRRORS", " | ".join([
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
])).split(" | ")
# The guest system, then what deploy/install.sh checks for (kctl's own).
PACKAGES = [
    "systemd", "systemd-sysv", "udev", "dbus", "linux-image-cloud-amd64", "openssh-server",
    "sudo", "rsync", "python3", "python3-venv", "iputils-ping", "less",
    "etcd-server", "runc", "conmon", "skopeo", "umoci", "busybox-static", "iptables", "iproute2",
    "docker-registry", "conntrack", "util-linux", "procps", "psmisc", "kmod", "ca-certificates",
]
DISK_GIB = 8
PART_START = 1 << 20
VAGRANT_PUB = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")
WHEELHOUSE = "/var/lib/kctl/wheelhouse"
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
TOOLS = ("mmdebstrap", "sfdisk", "mke2fs", "grub-mkimage", "qemu-img")


@dataclass(frozen=True)
class Box:
    name: str
    path: Path
    digest: str


def vagrant_pub() -> Path:
    """Vagrant's well-known insecure public key, from Debian's vagrant package."""
    for path in [VAGRANT_PUB, *Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant.pub")]:
        if path.is_file():
            return path
    raise HostError("Vagrant's insecure public key not found: apt-get install vagrant")


def python_pins() -> list[str]:
    """pyproject.toml's pinned dependencies and test extras (install.sh installs .[test])."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    return [*project["dependencies"], *project["optional-dependencies"]["test"], *build]


def inputs_digest() -> str:
    h = hashlib.sha256()
    for part in [Path(__file__).read_bytes(), "\n".join(PACKAGES), "\n".join(MIRRORS),
                 "\n".join(python_pins()), vagrant_pub().read_bytes(), str(DISK_GIB)]:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def current() -> Box | None:
    """The box recorded in CACHE/box.json, if its file is there."""
    try:
        meta = json.loads((CACHE / "box.json").read_text())
    except (OSError, ValueError):
        return None
    box = Box(meta["name"], Path(meta["path"]), meta["hash"])
    return box if box.path.is_file() else None


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], check=True, **kw)
    except FileNotFoundError as exc:
        raise HostError(f"{cmd[0]} not found: run deploy/vagrant/install-host.sh") from exc
    except subprocess.CalledProcessError as exc:
        raise HostError(f"{' '.join(map(str, cmd[:3]))} ... failed with exit code {exc.returncode}") from exc


def ensure_box(log=print) -> Box:
    """The cached box for the current inputs, built first if missing."""
    digest = inputs_digest()
    box = current()
    if box and box.digest == digest:
        return box
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise HostError(f"cannot build the box, missing {', '.join(missing)}: run deploy/vagrant/install-host.sh")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"build-{digest}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        box = _build(work, digest, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in CACHE.glob("kctl-bookworm-*.box"):
        if old != box.path:
            old.unlink()
    for old in CACHE.glob("vagrant.d/boxes/kctl-bookworm-*"):   # what `vagrant up` added of older builds
        if old.name != box.name:
            shutil.rmtree(old)
    (CACHE / "box.json").write_text(json.dumps({"name": box.name, "path": str(box.path), "hash": digest}) + "\n")
    return box


def _build(work: Path, digest: str, log) -> Box:
    t0 = time.monotonic()
    wheels = work / "wheelhouse"
    log(f"box: wheelhouse of {len(python_pins())} pinned Python requirements")
    run(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", wheels, *python_pins())
    root = work / "root"
    log(f"box: mmdebstrap --variant=minbase {SUITE} ({len(PACKAGES)} packages)")
    run("mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
        "--aptopt=Acquire::Languages \"none\"",
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--quiet", SUITE, root, *MIRRORS)
    fs_uuid = str(uuid.uuid4())
    _configure(root, fs_uuid)
    shutil.copytree(wheels, root / WHEELHOUSE.lstrip("/"))
    log("box: kctl's dependencies into /opt/kctl/.venv (chroot)")
    run("chroot", root, "python3", "-m", "venv", "/opt/kctl/.venv")
    run("chroot", root, "/opt/kctl/.venv/bin/pip", "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
        *python_pins())
    log(f"box: root tree ready after {time.monotonic() - t0:.0f}s; disk image")
    raw = work / "disk.raw"
    _disk(root, raw, fs_uuid)
    name = f"kctl-bookworm-{digest}"
    box_dir = work / "box"
    box_dir.mkdir()
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, box_dir / "box.img")
    raw.unlink()
    (box_dir / "metadata.json").write_text(json.dumps(
        {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}) + "\n")
    (box_dir / "Vagrantfile").write_text(
        "# kctl's offline box (deploy/vagrant/box.py)\nVagrant.configure(\"2\") do |c|\n"
        "  c.vm.provider(:libvirt) { |lv| lv.disk_bus = \"virtio\" }\nend\n")
    out = CACHE / f"{name}.box"
    with tarfile.open(out.with_suffix(".tmp"), "w") as tar:
        for f in ("metadata.json", "Vagrantfile", "box.img"):
            tar.add(box_dir / f, arcname=f)
    out.with_suffix(".tmp").rename(out)
    log(f"box: {out} ({out.stat().st_size >> 20} MiB) built in {time.monotonic() - t0:.0f}s")
    return Box(name, out, digest)


FILES = {
    "etc/hostname": "kctl\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/systemd/network/99-kctl-eth0.network":
        "# The management NIC (Vagrant's): DHCP from an isolated libvirt network,\n"
        "# which hands out no router and no DNS server.\n"
        "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nUseDNS=no\nUseRoutes=no\nUseGateway=no\n",
    "etc/systemd/system/kctl-ssh-hostkeys.service":
        "[Unit]\nDescription=SSH host keys of this VM (the box ships none)\nBefore=ssh.service\n"
        "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n"
        "[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n[Install]\nWantedBy=multi-user.target\n",
    "etc/sudoers.d/vagrant": "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n",
    "etc/ssh/sshd_config.d/kctl.conf": "UseDNS no\n",
}


def _configure(root: Path, fs_uuid: str) -> None:
    """File edits on the debootstrapped tree (no guest code runs but useradd/systemctl)."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "etc/sudoers.d/vagrant").chmod(0o440)
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    run("chroot", root, "useradd", "-m", "-s", "/bin/bash", "vagrant")
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(vagrant_pub(), ssh / "authorized_keys")
    (ssh / "authorized_keys").chmod(0o600)
    run("chroot", root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")
    run("chroot", root, "systemctl", "enable", "-q", "systemd-networkd", "kctl-ssh-hostkeys")
    # Debian's etcd and docker-registry units would take kctl's ports at boot
    # (install-units.sh disables them too); wait-online would wait for NICs
    # that Vagrant configures later.
    run("chroot", root, "systemctl", "disable", "-q", "etcd", "docker-registry")
    run("chroot", root, "systemctl", "mask", "-q", "systemd-networkd-wait-online")
    kernel = sorted((root / "boot").glob("vmlinuz-*"))[-1].name
    grub = root / "boot/grub"
    (grub / "i386-pc").mkdir(parents=True)
    for mod in GRUB_DIR.iterdir():
        if mod.suffix in (".mod", ".lst"):
            shutil.copy(mod, grub / "i386-pc" / mod.name)
    (grub / "grub.cfg").write_text(
        "set timeout=0\n"
        f"linux /boot/{kernel} root=UUID={fs_uuid} ro console=ttyS0 net.ifnames=0 quiet\n"
        f"initrd /boot/initrd.img-{kernel.removeprefix('vmlinuz-')}\nboot\n")
    shutil.rmtree(root / "var/cache/apt", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
        lists.unlink()


def _disk(root: Path, raw: Path, fs_uuid: str) -> None:
    size = DISK_GIB << 30
    with raw.open("wb") as f:
        f.truncate(size)
    run("sfdisk", "-q", raw, input=f"label: dos\nstart={PART_START // 512}, type=83, bootable\n",
        text=True, stdout=subprocess.DEVNULL)
    fs_kib = (size - PART_START) >> 10
    run("mke2fs", "-q", "-F", "-t", "ext4", "-U", fs_uuid, "-L", "root", "-d", root,
        "-E", f"offset={PART_START}", raw, f"{fs_kib}k")
    core = raw.with_name("core.img")
    run("grub-mkimage", "-O", "i386-pc", "-o", core, "-p", "(hd0,msdos1)/boot/grub",
        "biosdisk", "part_msdos", "ext2")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    image = core.read_bytes()
    if len(image) > PART_START - 512:
        raise HostError(f"grub core.img is {len(image)} bytes: it does not fit before the partition")
    with raw.open("r+b") as f:
        f.write(boot[:440])        # keep the partition table (from byte 446) and the disk id
        f.seek(512)
        f.write(image)
