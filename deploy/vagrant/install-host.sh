#!/usr/bin/env bash
# Install what the offline Vagrant lab (python -m deploy.vagrant, kctl-vagrant)
# needs on the host: Debian 12, as root, no questions asked (stdin is not
# read). Idempotent: installs only what is missing.
#
#   vagrant + vagrant-libvirt      the Vagrantfile, the libvirt provider
#   libvirt-daemon-system, -clients, qemu-system-x86, qemu-utils, dnsmasq-base
#                                  the VMs (QEMU TCG) and their isolated networks
#   mmdebstrap, fdisk, e2fsprogs, grub-pc-bin
#                                  the box builder (deploy/vagrant/box.py)
#   rsync, openssh-client          Vagrant's rsync synced folder and ssh
#
# Installing libvirt-daemon-system defines libvirt's `default` NAT network
# but does not start it, and the lab never does (it refuses to run while any
# forwarding libvirt network is active). Where systemd is PID 1 the package
# starts libvirtd; elsewhere the lab starts virtlogd and libvirtd itself.
set -euo pipefail
PKGS=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
      dnsmasq-base mmdebstrap fdisk e2fsprogs grub-pc-bin rsync openssh-client iptables)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "installing the Vagrant lab's Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null >/dev/null
