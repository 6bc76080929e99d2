"""`python -m deploy.vagrant box|up|status|kill-node NAME|down|vagrant ARGS...` (see cycle.py).

    box                 build (or reuse) the offline box; print its path
    up [--workers N] [--control-planes N]
                        box, libvirt, isolated networks, `vagrant up` (1 cp + N workers; with
                        --control-planes 3: cp1..cp3, an HA control plane)
    status              vagrant status of every VM `up` made, the lab's domains and networks
    kill-node NAME      `virsh destroy` the VM NAME (cp, cp2, worker1, ...): power off, no shutdown
    down                destroy everything the lab made (also after a crashed run)
    vagrant ARGS...     vagrant with the lab's environment, e.g. `vagrant ssh cp -c 'kctl get nodes'`
    pki OUT CP [NAME=IP ...] [--service-cidr CIDR]
                        the cluster's PKI and per-VM bundles (deploy/vagrant/pki.py; the Vagrantfile's trigger);
                        CP: the control plane's address, or NAME=IP,NAME=IP,... of every one (HA)
"""
from __future__ import annotations

import argparse
import os
import sys

from deploy.vagrant import box, cycle, host
from machinery.errors import KctlError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kctl-vagrant", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("box")
    up = sub.add_parser("up")
    up.add_argument("--workers", type=int, default=int(os.environ.get("KCTL_WORKERS", "2")))
    up.add_argument("--control-planes", type=int, default=int(os.environ.get("KCTL_CONTROL_PLANES", "1")))
    sub.add_parser("status")
    kill = sub.add_parser("kill-node")
    kill.add_argument("name")
    sub.add_parser("down")
    pk = sub.add_parser("pki")
    pk.add_argument("out")
    pk.add_argument("control_planes", metavar="CP")
    pk.add_argument("workers", nargs="*", metavar="NAME=IP")
    pk.add_argument("--service-cidr", default="10.96.0.0/16")
    vag = sub.add_parser("vagrant")
    vag.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.verb == "pki":
        from deploy.vagrant import pki
        try:
            out = pki.make(args.out, pki.control_planes(args.control_planes),
                           dict(w.split("=", 1) for w in args.workers), args.service_cidr)
        except KctlError as exc:
            print(f"kctl-vagrant pki: {exc}", file=sys.stderr)
            return 1
        print(f"kctl PKI for the Vagrant cluster in {out}; admin: KUBECONFIG={out / 'pki' / 'admin.conf'}")
        return 0
    if os.geteuid() != 0 and args.verb != "vagrant":
        print("kctl-vagrant: run as root (libvirt's system instance, networks, iptables)", file=sys.stderr)
        return 1
    try:
        if args.verb == "box":
            print(box.ensure_box().path)
        elif args.verb == "up":
            times = cycle.up(args.workers, control_planes=args.control_planes)
            print("times: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
            print(f"apiserver: KUBECONFIG={cycle.PKI_DIR / 'pki' / 'admin.conf'} kctl get nodes")
        elif args.verb == "status":
            cycle.status()
        elif args.verb == "kill-node":
            host.kill_node(args.name)
        elif args.verb == "down":
            print(f"down in {cycle.down():.0f}s")
        else:
            return cycle.vagrant(*args.args, check=False).returncode
    except KctlError as exc:
        print(f"kctl-vagrant: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
