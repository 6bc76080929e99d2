#!/usr/bin/env bash
# Install kctl's systemd units and their /etc/kctl/*.env files, then enable
# and start them. Idempotent: running it again with the same arguments changes
# nothing and restarts nothing; a unit whose unit or env file changed is
# restarted (the previous env file is kept as NAME.env.bak).
#
#   install-units.sh controlplane --advertise-ip IP [options]
#       kctl-etcd, kctl-apiserver, kctl-scheduler, kctl-controller-manager,
#       kctl-registry, kctl-dns
#   install-units.sh worker --apiserver HOST:PORT --node-ip IP [options]
#       kctl-nodeagent
#
# Options (the environment variable in brackets is the default):
#   --prefix DIR              kctl checkout whose .venv/ has the kctl-* scripts
#                             (default: the checkout holding this script) [KCTL_PREFIX]
#   controlplane:
#   --advertise-ip IP         the control plane's cluster-network address: the
#                             apiserver (:6443) and the registry (:5000) listen
#                             there [KCTL_ADVERTISE_IP]
#   --service-cidr CIDR       ClusterIP range (10.96.0.0/16) [KCTL_SERVICE_CIDR]
#   --cluster-cidr CIDR       pod network (10.244.0.0/16) [KCTL_CLUSTER_CIDR]
#   --node-cidr-mask-size N   each node's share of it (24) [KCTL_NODE_CIDR_MASK_SIZE]
#   --control-plane-hosts NAME=IP,NAME=IP,...   an HA control plane: every
#                             control-plane machine, in order, this one (the
#                             --advertise-ip) among them; more than one makes
#                             kctl-etcd the member NAME of one etcd cluster
#                             (--initial-cluster of all, peers over TLS on
#                             IP:2380), the apiserver's --etcd-servers and the
#                             components' --apiserver list every member and
#                             apiserver (this machine's first), the registry
#                             runs on the first machine only, and units start
#                             without waiting (etcd is ready once a quorum of
#                             members is up). All machines share one PKI: make
#                             it once and copy it (deploy/vagrant/pki.py does)
#                             [KCTL_CONTROL_PLANE_HOSTS]
#   worker:
#   --apiserver HOST:PORT[,HOST:PORT...]   the control plane's apiserver, or
#                             every apiserver of an HA control plane [KCTL_APISERVER]
#   --node-ip IP              this node's cluster-network address [KCTL_NODE_IP]
#   --node-name NAME          (default: `hostname -s`) [KCTL_NODE_NAME]
#   --registry HOST:PORT      docker.io mirror, plain http (default: the
#                             first apiserver's host, port 5000) [KCTL_REGISTRY]
#   --node-labels k=v,...     [KCTL_NODE_LABELS]
#   --register-with-taints k=v:NoSchedule,...   [KCTL_NODE_TAINTS]
#   --masquerade-cidr CIDR    masquerade pod traffic to this network (the node
#                             network: the control plane, which routes no pod
#                             CIDR, then answers pods' DNS and API queries) [KCTL_MASQUERADE_CIDR]
#   both:
#   --cluster-dns IP          ClusterIP of kube-system/kube-dns: kctl-dns creates
#                             the Service with it, node agents give it to pods
#                             (10.96.0.10) [KCTL_CLUSTER_DNS]
#   certificates (/etc/kctl/pki, machinery.pki's layout): the control plane
#   makes what is missing with `kctl pki init --etcd` (CA, serving, etcd and
#   component certificates, admin.conf); a worker needs /etc/kctl/pki/node.conf
#   from the control plane (`kctl pki node NAME --ip IP` there, then copy
#   /etc/kctl/pki/nodes/NAME.conf; the Vagrant set-up copies it from the host)
#   --root DIR                install below DIR instead of / (an image, a test):
#                             files only, no systemctl, no modprobe
#   --no-start                install and enable, but do not start or restart
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true   # bash 5.2: '&' literal in ${x//a/b}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }
die() { echo "install-units.sh: $*" >&2; exit 1; }

ROLE=${1:-}
case "$ROLE" in
    controlplane|worker) shift ;;
    -h|--help) usage 0 ;;
    *) usage ;;
esac

PREFIX=${KCTL_PREFIX:-$(cd "$HERE/../.." && pwd)}
ADVERTISE_IP=${KCTL_ADVERTISE_IP:-}
SERVICE_CIDR=${KCTL_SERVICE_CIDR:-10.96.0.0/16}
CLUSTER_CIDR=${KCTL_CLUSTER_CIDR:-10.244.0.0/16}
NODE_CIDR_MASK_SIZE=${KCTL_NODE_CIDR_MASK_SIZE:-24}
APISERVER=${KCTL_APISERVER:-}
NODE_IP=${KCTL_NODE_IP:-}
NODE_NAME=${KCTL_NODE_NAME:-}
REGISTRY=${KCTL_REGISTRY:-}
NODE_LABELS=${KCTL_NODE_LABELS:-}
NODE_TAINTS=${KCTL_NODE_TAINTS:-}
CLUSTER_DNS=${KCTL_CLUSTER_DNS:-10.96.0.10}
MASQUERADE_CIDR=${KCTL_MASQUERADE_CIDR:-}
CONTROL_PLANE_HOSTS=${KCTL_CONTROL_PLANE_HOSTS:-}
ROOT=""
START=1

while (($#)); do
    opt=$1
    case "$opt" in
        --no-start) START=0; shift; continue ;;
        -h|--help) usage 0 ;;
        --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
    esac
    (($# >= 2)) || die "$opt needs a value"
    val=$2
    case "$opt" in
        --prefix) PREFIX=$val ;;
        --advertise-ip) ADVERTISE_IP=$val ;;
        --service-cidr) SERVICE_CIDR=$val ;;
        --cluster-cidr) CLUSTER_CIDR=$val ;;
        --node-cidr-mask-size) NODE_CIDR_MASK_SIZE=$val ;;
        --apiserver) APISERVER=$val ;;
        --node-ip) NODE_IP=$val ;;
        --node-name) NODE_NAME=$val ;;
        --registry) REGISTRY=$val ;;
        --node-labels) NODE_LABELS=$val ;;
        --register-with-taints) NODE_TAINTS=$val ;;
        --cluster-dns) CLUSTER_DNS=$val ;;
        --masquerade-cidr) MASQUERADE_CIDR=$val ;;
        --control-plane-hosts) CONTROL_PLANE_HOSTS=$val ;;
        --root) ROOT=${val%/} ;;
        *) die "unknown option $opt (see --help)" ;;
    esac
    shift 2
done

PREFIX=${PREFIX%/}
# One control plane (the default): etcd is the single member "kctl" with its
# peer URL on loopback, the apiserver uses it on loopback, the components this
# machine's apiserver. Several (--control-plane-hosts): see control_plane_hosts.
ETCD_NAME=kctl
ETCD_CLIENT_URL=https://127.0.0.1:2379
ETCD_PEER_URL=https://127.0.0.1:2380
ETCD_INITIAL_CLUSTER=kctl=https://127.0.0.1:2380
ETCD_SERVERS=https://127.0.0.1:2379
CP_APISERVERS=$ADVERTISE_IP:6443
HA=0
control_plane_hosts() {  # parse --control-plane-hosts into the values above (this machine's first)
    local pair name ip names=" " ips=" " own="" others="" first=""
    local -a pairs
    IFS=, read -ra pairs <<<"$CONTROL_PLANE_HOSTS"
    ((${#pairs[@]} > 1)) ||
        die "--control-plane-hosts: give every control-plane machine (2 or more NAME=IP), not '$CONTROL_PLANE_HOSTS'"
    ETCD_INITIAL_CLUSTER=""
    for pair in "${pairs[@]}"; do
        name=${pair%%=*} ip=${pair#*=}
        [[ $pair == *=* && $name =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ && $ip =~ ^[0-9]+(\.[0-9]+){3}$ ]] ||
            die "--control-plane-hosts: '$pair' is not NAME=IPv4 (NAME: lower-case letters, digits, '-')"
        [[ $names != *" $name "* ]] || die "--control-plane-hosts: the name $name is given twice"
        [[ $ips != *" $ip "* ]] || die "--control-plane-hosts: the address $ip is given twice"
        names+="$name " ips+="$ip "
        first=${first:-$ip}
        ETCD_INITIAL_CLUSTER+="${ETCD_INITIAL_CLUSTER:+,}$name=https://$ip:2380"
        if [ "$ip" = "$ADVERTISE_IP" ]; then
            ETCD_NAME=$name own=$ip
        else
            others+=" $ip"
        fi
    done
    [ -n "$own" ] ||
        die "--control-plane-hosts: this machine's --advertise-ip $ADVERTISE_IP is not one of '$CONTROL_PLANE_HOSTS'"
    ETCD_CLIENT_URL=https://$own:2379
    ETCD_PEER_URL=https://$own:2380
    ETCD_SERVERS=$ETCD_CLIENT_URL CP_APISERVERS=$own:6443
    for ip in $others; do
        ETCD_SERVERS+=",https://$ip:2379" CP_APISERVERS+=",$ip:6443"
    done
    HA=1 REGISTRY_HERE=0
    [ "$own" != "$first" ] || REGISTRY_HERE=1
}
if [ "$ROLE" = controlplane ]; then
    [ -n "$ADVERTISE_IP" ] || die "controlplane needs --advertise-ip"
    REGISTRY_HERE=1
    [ -z "$CONTROL_PLANE_HOSTS" ] || control_plane_hosts
    COMPONENTS=(etcd registry apiserver scheduler controller-manager dns)
    ((REGISTRY_HERE)) || COMPONENTS=(etcd apiserver scheduler controller-manager dns)
else
    [ -n "$APISERVER" ] || die "worker needs --apiserver HOST:PORT"
    [ -n "$NODE_IP" ] || die "worker needs --node-ip"
    NODE_NAME=${NODE_NAME:-$(hostname -s)}
    first_apiserver=${APISERVER%%,*}
    REGISTRY=${REGISTRY:-${first_apiserver%:*}:5000}
    COMPONENTS=(nodeagent)
fi
EXTRA_ARGS=""
[ -z "$NODE_LABELS" ] || EXTRA_ARGS+="--node-labels $NODE_LABELS "
[ -z "$NODE_TAINTS" ] || EXTRA_ARGS+="--register-with-taints $NODE_TAINTS "
[ -z "$MASQUERADE_CIDR" ] || EXTRA_ARGS+="--masquerade-cidr $MASQUERADE_CIDR "
for v in "$ADVERTISE_IP" "$APISERVER" "$NODE_IP" "$NODE_NAME" "$REGISTRY" "$NODE_LABELS" "$NODE_TAINTS" \
         "$SERVICE_CIDR" "$CLUSTER_CIDR" "$NODE_CIDR_MASK_SIZE" "$CLUSTER_DNS" "$MASQUERADE_CIDR" \
         "$CONTROL_PLANE_HOSTS"; do
    case "$v" in *[[:space:]\"\'\\\$]*) die "values may not contain spaces, quotes, backslashes or \$: '$v'" ;; esac
done
if [ -z "$ROOT" ]; then
    [ "$(id -u)" = 0 ] || die "run as root (or use --root DIR)"
    for c in "${COMPONENTS[@]}"; do
        case "$c" in etcd|registry) continue ;; esac
        [ -x "$PREFIX/.venv/bin/kctl-$c" ] || die "$PREFIX/.venv/bin/kctl-$c missing: run $PREFIX/deploy/install.sh first"
    done
fi

UNIT_DIR=$ROOT/etc/systemd/system
CONF_DIR=$ROOT/etc/kctl
mkdir -p "$UNIT_DIR" "$CONF_DIR"

# The cluster's certificates (see above). With --root and no kctl installed
# (a test, an image): only said, not made.
PKI=$CONF_DIR/pki
if [ "$ROLE" = controlplane ]; then
    if ((HA)) && [ ! -f "$PKI/ca.crt" ]; then
        # Each machine making its own CA would be N clusters that refuse each other.
        [ -n "$ROOT" ] || die "$PKI/ca.crt missing: an HA control plane shares one PKI; make it once" \
            "(deploy/vagrant/pki.py does: one CA, an etcd certificate per member) and copy it to every machine"
        echo "  note: $PKI/ca.crt missing: an HA control plane's shared certificates are not made here"
    elif [ -x "$PREFIX/.venv/bin/kctl" ]; then
        # What exists is kept; anything made here names every apiserver.
        "$PREFIX/.venv/bin/kctl" pki init --cert-dir "$PKI" --etcd --address "$ADVERTISE_IP" \
            --grpc-server "$CP_APISERVERS" --https-server "https://$ADVERTISE_IP:8080" \
            --service-cidr "$SERVICE_CIDR" | sed 's/^/  /'
    else
        echo "  note: $PREFIX/.venv/bin/kctl missing: certificates in $PKI not made"
    fi
elif [ ! -f "$PKI/node.conf" ]; then
    [ -n "$ROOT" ] || die "$PKI/node.conf missing: on the control plane run \`kctl pki node $NODE_NAME --ip $NODE_IP --cert-dir /etc/kctl/pki\` and copy /etc/kctl/pki/nodes/$NODE_NAME.conf here as $PKI/node.conf (0600)"
    echo "  note: $PKI/node.conf missing (the node's kubeconfig from the control plane)"
fi

render() {  # render FILE: the file with our values in place of its @PLACEHOLDERS@
    local s
    s=$(<"$1")
    s=${s//\/opt\/kctl\//$PREFIX/}
    s=${s//@ADVERTISE_IP@/$ADVERTISE_IP}
    s=${s//@SERVICE_CIDR@/$SERVICE_CIDR}
    s=${s//@CLUSTER_CIDR@/$CLUSTER_CIDR}
    s=${s//@NODE_CIDR_MASK_SIZE@/$NODE_CIDR_MASK_SIZE}
    s=${s//@APISERVER@/$APISERVER}
    s=${s//@CP_APISERVERS@/$CP_APISERVERS}
    s=${s//@ETCD_NAME@/$ETCD_NAME}
    s=${s//@ETCD_CLIENT_URL@/$ETCD_CLIENT_URL}
    s=${s//@ETCD_PEER_URL@/$ETCD_PEER_URL}
    s=${s//@ETCD_INITIAL_CLUSTER@/$ETCD_INITIAL_CLUSTER}
    s=${s//@ETCD_SERVERS@/$ETCD_SERVERS}
    s=${s//@NODE_NAME@/$NODE_NAME}
    s=${s//@NODE_IP@/$NODE_IP}
    s=${s//@REGISTRY@/$REGISTRY}
    s=${s//@CLUSTER_DNS@/$CLUSTER_DNS}
    s=${s//@EXTRA_ARGS@/${EXTRA_ARGS% }}
    if [[ $s =~ @[A-Z_]+@ ]]; then
        die "$1: no value for ${BASH_REMATCH[0]}"
    fi
    printf '%s\n' "$s"
}

CHANGED=()
install_file() {  # install_file CONTENT DEST MODE [backup]: write DEST only if different
    local content=$1 dest=$2 mode=$3 backup=${4:-}
    if [ -f "$dest" ] && [ "$(<"$dest")" = "${content%$'\n'}" ]; then
        echo "  unchanged  $dest"
        return 1
    fi
    if [ -n "$backup" ] && [ -f "$dest" ]; then
        cp -p "$dest" "$dest.bak"
        echo "  (previous $dest kept as $dest.bak)"
    fi
    printf '%s\n' "${content%$'\n'}" >"$dest.tmp"
    chmod "$mode" "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    echo "  wrote      $dest"
}

echo "kctl $ROLE units (prefix $PREFIX) into ${ROOT:-/}"
for c in "${COMPONENTS[@]}"; do
    changed=0
    unit=$(render "$HERE/kctl-$c.service")
    env=$(render "$HERE/env/$c.env")
    if install_file "$unit" "$UNIT_DIR/kctl-$c.service" 0644; then changed=1; fi
    if install_file "$env" "$CONF_DIR/$c.env" 0644 backup; then changed=1; fi
    if [ "$c" = registry ] && install_file "$(<"$HERE/registry.yml")" "$CONF_DIR/registry.yml" 0644 backup; then
        changed=1
    fi
    if [ "$c" = etcd ]; then   # an HA member: its start waits for a quorum (etcd-member.conf)
        dropin=$UNIT_DIR/kctl-etcd.service.d/kctl-member.conf
        if ((HA)); then
            mkdir -p "${dropin%/*}"
            if install_file "$(<"$HERE/etcd-member.conf")" "$dropin" 0644; then changed=1; fi
        elif [ -f "$dropin" ]; then
            rm -f "$dropin" && echo "  removed    $dropin" && changed=1
        fi
    fi
    if ((changed)); then CHANGED+=("$c"); fi
done
if [ "$ROLE" = worker ]; then
    mkdir -p "$ROOT/etc/modules-load.d"
    install_file "$(printf '# kctl node agent: pod network (bridge-nf-call-iptables) and container rootfs\nbr_netfilter\noverlay')" \
        "$ROOT/etc/modules-load.d/kctl.conf" 0644 || true
fi

# KCTL_SYSTEMCTL: the systemctl to call (tests pass a fake one, also with --root).
if [ -n "$ROOT" ] && [ -z "${KCTL_SYSTEMCTL:-}" ]; then
    echo "installed below $ROOT (no systemctl)"
    exit 0
fi
systemctl() { command "${KCTL_SYSTEMCTL:-systemctl}" "$@"; }

if [ "$ROLE" = worker ] && [ -z "$ROOT" ]; then
    modprobe -a br_netfilter overlay || echo "warning: modprobe br_netfilter overlay failed" >&2
fi
command -v "${KCTL_SYSTEMCTL:-systemctl}" >/dev/null ||
    die "systemctl not found: files are installed, start the components by hand (deploy/README.md)"
systemctl daemon-reload
# Debian's etcd-server and docker-registry packages (installed everywhere by
# deploy/install.sh) enable their own services on the ports we use
# (2379/2380, 5000): kctl-etcd and kctl-registry replace them on the control
# plane, and workers need neither.
for svc in etcd.service docker-registry.service; do
    if systemctl list-unit-files "$svc" 2>/dev/null | grep -q "^$svc"; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
units=()
for c in "${COMPONENTS[@]}"; do units+=("kctl-$c.service"); done
systemctl enable "${units[@]}" 2>&1 | grep -v "^Created symlink" || true
# An HA member's etcd is ready only once a quorum of the machines run it:
# queue the jobs (systemd starts the rest in order after it) and go on.
NO_BLOCK=()
((HA)) && NO_BLOCK=(--no-block)
if ((START)); then
    for c in "${COMPONENTS[@]}"; do
        if [[ " ${CHANGED[*]} " == *" $c "* ]] && systemctl is-active --quiet "kctl-$c.service"; then
            echo "  restart    kctl-$c.service (its files changed)"
            systemctl restart "${NO_BLOCK[@]}" "kctl-$c.service"
        else
            systemctl start "${NO_BLOCK[@]}" "kctl-$c.service"
        fi
    done
    systemctl --no-pager --lines=0 status "${units[@]}" | grep -E "^[^ ]|Active:" || true
fi
