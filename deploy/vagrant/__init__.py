"""kctl's Vagrant lab: a control plane VM and N worker VMs, online or offline.

Online (a user with internet and VirtualBox or libvirt), `vagrant up` in this
directory uses Debian's `debian/bookworm64` box. Offline, on a machine like
this project's (no route out, no usable /dev/kvm, no systemd as PID 1),
`python -m deploy.vagrant up` (or `deploy/vagrant/kctl-vagrant up`) builds
or reuses a box with everything baked in (`box.py`), starts libvirt if it is
not running, defines the lab's isolated networks (`host.py`) and runs
`vagrant up` with the libvirt provider on QEMU TCG. See deploy/README.md §3.
"""
