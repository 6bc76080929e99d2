#!/usr/bin/env bash
# Provision one VM of kctl's Vagrant cluster. Vagrant runs it as root, after
# rsyncing the repository to /opt/kctl; it is idempotent (`vagrant provision`
# runs it again: nothing changes unless the arguments or the files did).
#
#   provision.sh controlplane --advertise-ip IP --hosts NAME=IP,... [install-units options]
#   provision.sh worker --node-name NAME --node-ip IP --apiserver HOST:PORT[,HOST:PORT...] \
#                       --registry HOST:PORT --hosts NAME=IP,... [install-units options]
#
# Steps: what deploy/install.sh assumes of a Debian 12 box (python3-venv);
# every machine's name in /etc/hosts; deploy/install.sh (Debian packages +
# .venv); deploy/systemd/install-units.sh ROLE (units, /etc/kctl/*.env,
# enable, start); `kctl` on PATH with a kubeconfig for root and vagrant.
# Control plane only: deploy/systemd/push-images.sh builds kctl's offline
# images and pushes them to its registry under docker.io names
# (library/busybox, ...): the node agents' docker.io mirror.
# An HA control plane (--control-plane-hosts cp1=IP,cp2=IP,...): the registry
# and the images are cp1's only; etcd answers once a quorum of the machines
# runs it, so the first machines (cp1 of 3) do not wait for the apiserver,
# and the machine that completes the quorum (cp2 of 3) and those after it do.
set -euo pipefail

KCTL=/opt/kctl
ROLE=${1:?usage: provision.sh controlplane|worker [options]}
shift
HOSTS=""
ADVERTISE_IP=""
APISERVER=""
NODE_NAME=""
CONTROL_PLANE_HOSTS=""
UNIT_ARGS=()
while (($#)); do
    case "$1" in
        --hosts) HOSTS=$2 ;;
        --advertise-ip) ADVERTISE_IP=$2; UNIT_ARGS+=("$1" "$2") ;;
        --apiserver) APISERVER=$2; UNIT_ARGS+=("$1" "$2") ;;
        --node-name) NODE_NAME=$2; UNIT_ARGS+=("$1" "$2") ;;
        --control-plane-hosts) CONTROL_PLANE_HOSTS=$2; UNIT_ARGS+=("$1" "$2") ;;
        *) UNIT_ARGS+=("$1" "$2") ;;
    esac
    shift 2
done
# This control plane's place: CP_INDEX of CP_COUNT (1 of 1 without --control-plane-hosts).
# The registry is the first one's.
CP_INDEX=1
CP_COUNT=1
REGISTRY=$ADVERTISE_IP:5000
if [ -n "$CONTROL_PLANE_HOSTS" ]; then
    IFS=, read -ra cps <<<"$CONTROL_PLANE_HOSTS"
    CP_COUNT=${#cps[@]} CP_INDEX=0 REGISTRY=${cps[0]#*=}:5000
    for i in "${!cps[@]}"; do
        [ "${cps[$i]#*=}" != "$ADVERTISE_IP" ] || CP_INDEX=$((i + 1))
    done
fi
[ "$ROLE" = controlplane ] && APISERVER=$ADVERTISE_IP:6443

step() { printf '\n==> kctl %s: %s\n' "$ROLE" "$*"; }

wait_for() {  # wait_for SECONDS WHAT CMD...: retry CMD until it succeeds
    local secs=$1 what=$2
    shift 2
    for ((i = 0; i < secs; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "timed out after ${secs}s waiting for $what" >&2
    return 1
}

[ -f "$KCTL/deploy/install.sh" ] || { echo "$KCTL is empty: the rsync synced folder is missing" >&2; exit 1; }

step "prerequisites (python3-venv)"
missing=()
for p in python3 python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "/etc/hosts"
if [ -n "$HOSTS" ]; then
    block="# kctl BEGIN (deploy/vagrant/provision.sh)"$'\n'
    IFS=, read -ra pairs <<<"$HOSTS"
    for p in "${pairs[@]}"; do block+="${p#*=} ${p%%=*}"$'\n'; done
    block+="# kctl END"
    sed -i '/^# kctl BEGIN/,/^# kctl END/d' /etc/hosts
    printf '%s\n' "$block" >>/etc/hosts
fi

step "deploy/install.sh (Debian packages, $KCTL/.venv)"
# The offline box (deploy/vagrant/box.py) carries kctl's Python wheels: the
# VM has no route out, so pip installs from them.
if [ -d /var/lib/kctl/wheelhouse ]; then
    export KCTL_WHEELHOUSE=/var/lib/kctl/wheelhouse
fi
"$KCTL/deploy/install.sh"
ln -sf "$KCTL/.venv/bin/kctl" /usr/local/bin/kctl

step "certificates (/etc/kctl/pki, from the host's deploy/vagrant/pki.py)"
# The file provisioner put this machine's bundle in /tmp/kctl-pki (as the
# vagrant user): root's only from here on.
if [ -d /tmp/kctl-pki ]; then
    install -d -m 0700 /etc/kctl /etc/kctl/pki
    cp -R /tmp/kctl-pki/. /etc/kctl/pki/
    rm -rf /tmp/kctl-pki
    chown -R root:root /etc/kctl/pki
    chmod -R go-rwx /etc/kctl/pki
fi
[ -f /etc/kctl/pki/ca.crt ] || { echo "/etc/kctl/pki has no ca.crt: the kctl-pki file provisioner did not run" >&2; exit 1; }

step "systemd units"
"$KCTL/deploy/systemd/install-units.sh" "$ROLE" --prefix "$KCTL" "${UNIT_ARGS[@]}"

write_kubeconfig() {  # write_kubeconfig USER HOME
    # The control plane's admin kubeconfig (CA, the kubernetes-admin client
    # certificate; kubectl's HTTPS URL and kctl's gRPC address): on the control
    # plane only, 0600 for its user; ~/.kube/config links to it when the user has none.
    local user=$1 home=$2
    [ -d "$home" ] || return 0
    [ -f /etc/kctl/pki/admin.conf ] || return 0
    install -d -o "$user" -m 0700 "$home/.kctl"
    install -o "$user" -m 0600 /etc/kctl/pki/admin.conf "$home/.kctl/config"
    if [ ! -e "$home/.kube/config" ] && [ ! -L "$home/.kube/config" ]; then
        mkdir -p "$home/.kube" && ln -s "$home/.kctl/config" "$home/.kube/config"
        chown -h "$user:" "$home/.kube" "$home/.kube/config"
    fi
}
step "kubeconfig (~/.kctl/config of root and vagrant on the control plane: the admin's)"
write_kubeconfig root /root
id vagrant >/dev/null 2>&1 && write_kubeconfig vagrant /home/vagrant

if [ "$ROLE" = controlplane ]; then
    if ((CP_INDEX == 1)); then
        step "images into the registry $REGISTRY"
        "$KCTL/deploy/systemd/push-images.sh" "$REGISTRY" /var/lib/kctl/images
    fi
    if ((CP_INDEX <= CP_COUNT / 2)); then
        cat <<EOF

kctl control plane $CP_INDEX of $CP_COUNT is installed: its etcd member waits for a quorum
($((CP_COUNT / 2 + 1)) of $CP_COUNT control planes); its apiserver $APISERVER answers after that.
EOF
        exit 0
    fi
    # With HA the apiserver needs etcd's quorum first: minutes on TCG VMs.
    step "waiting for the apiserver on $APISERVER"
    wait_for $((CP_COUNT > 1 ? 300 : 60)) "the apiserver" kctl --server "$APISERVER" get namespaces
    kctl --server "$APISERVER" get namespaces
    cat <<EOF

kctl control plane is up: apiserver $APISERVER, registry $REGISTRY.
  vagrant ssh $(hostname -s) -c 'kctl get nodes -o wide'
  from the host: KUBECONFIG=<KCTL_PKI_DIR>/pki/admin.conf kctl get nodes
EOF
else
    step "waiting for node $NODE_NAME to register with $APISERVER"
    # as the node itself: a worker holds no admin credentials
    node_kctl() { kctl --kubeconfig /etc/kctl/pki/node.conf --server "$APISERVER" "$@"; }
    if wait_for 90 "node $NODE_NAME" node_kctl get node "$NODE_NAME"; then
        node_kctl get node "$NODE_NAME" -o wide
    else
        echo "node $NODE_NAME not registered yet: see journalctl -u kctl-nodeagent" >&2
    fi
fi
