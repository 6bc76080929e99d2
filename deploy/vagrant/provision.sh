#!/usr/bin/env bash
# Provision one VM of kctl's Vagrant cluster. Vagrant runs it as root, after
# rsyncing the repository to /opt/kctl; it is idempotent (`vagrant provision`
# runs it again: nothing changes unless the arguments or the files did).
#
#   provision.sh controlplane --advertise-ip IP --hosts NAME=IP,... [install-units options]
#   provision.sh worker --node-name NAME --node-ip IP --apiserver HOST:PORT \
#                       --registry HOST:PORT --hosts NAME=IP,... [install-units options]
#
# Steps: what deploy/install.sh assumes of a Debian 12 box (python3-venv);
# every machine's name in /etc/hosts; deploy/install.sh (Debian packages +
# .venv); deploy/systemd/install-units.sh ROLE (units, /etc/kctl/*.env,
# enable, start); `kctl` on PATH with a kubeconfig for root and vagrant.
# Control plane only: deploy/systemd/push-images.sh builds kctl's offline
# images and pushes them to its registry under docker.io names
# (library/busybox, ...): the node agents' docker.io mirror.
set -euo pipefail

KCTL=/opt/kctl
ROLE=${1:?usage: provision.sh controlplane|worker [options]}
shift
HOSTS=""
ADVERTISE_IP=""
APISERVER=""
NODE_NAME=""
UNIT_ARGS=()
while (($#)); do
    case "$1" in
        --hosts) HOSTS=$2 ;;
        --advertise-ip) ADVERTISE_IP=$2; UNIT_ARGS+=("$1" "$2") ;;
        --apiserver) APISERVER=$2; UNIT_ARGS+=("$1" "$2") ;;
        --node-name) NODE_NAME=$2; UNIT_ARGS+=("$1" "$2") ;;
        *) UNIT_ARGS+=("$1" "$2") ;;
    esac
    shift 2
done
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
"$KCTL/deploy/install.sh"
ln -sf "$KCTL/.venv/bin/kctl" /usr/local/bin/kctl

step "systemd units"
"$KCTL/deploy/systemd/install-units.sh" "$ROLE" --prefix "$KCTL" "${UNIT_ARGS[@]}"

write_kubeconfig() {  # write_kubeconfig USER HOME
    # One file for kubectl (server: the HTTP API) and kctl (the kctl.dev/grpc
    # extension: gRPC); ~/.kube/config links to it when the user has none.
    local user=$1 home=$2
    [ -d "$home" ] || return 0
    mkdir -p "$home/.kctl"
    cat >"$home/.kctl/config" <<EOF
# kctl kubeconfig for the Vagrant cluster (deploy/vagrant/provision.sh)
apiVersion: v1
kind: Config
clusters:
- name: kctl-vagrant
  cluster:
    server: http://${APISERVER%:*}:8080
    extensions:
    - name: kctl.dev/grpc
      extension:
        server: $APISERVER
contexts:
- name: kctl-vagrant
  context:
    cluster: kctl-vagrant
    user: kctl-vagrant
users:
- name: kctl-vagrant
  user: {}
current-context: kctl-vagrant
EOF
    chown -R "$user:" "$home/.kctl"
    if [ ! -e "$home/.kube/config" ] && [ ! -L "$home/.kube/config" ]; then
        mkdir -p "$home/.kube" && ln -s "$home/.kctl/config" "$home/.kube/config"
        chown -h "$user:" "$home/.kube" "$home/.kube/config"
    fi
}
step "kubeconfig (~/.kctl/config of root and vagrant: server $APISERVER)"
write_kubeconfig root /root
id vagrant >/dev/null 2>&1 && write_kubeconfig vagrant /home/vagrant

if [ "$ROLE" = controlplane ]; then
    REGISTRY=$ADVERTISE_IP:5000
    step "images into the registry $REGISTRY"
    "$KCTL/deploy/systemd/push-images.sh" "$REGISTRY" /var/lib/kctl/images
    step "waiting for the apiserver on $APISERVER"
    wait_for 60 "the apiserver" kctl --server "$APISERVER" get namespaces
    kctl --server "$APISERVER" get namespaces
    cat <<EOF

kctl control plane is up: apiserver $APISERVER, registry $REGISTRY.
  vagrant ssh cp -c 'kctl get nodes -o wide'
  from the host: KCTL_SERVER=$APISERVER kctl get nodes
EOF
else
    step "waiting for node $NODE_NAME to register with $APISERVER"
    if wait_for 90 "node $NODE_NAME" kctl --server "$APISERVER" get node "$NODE_NAME"; then
        kctl --server "$APISERVER" get node "$NODE_NAME" -o wide
    else
        echo "node $NODE_NAME not registered yet: see journalctl -u kctl-nodeagent" >&2
    fi
fi
