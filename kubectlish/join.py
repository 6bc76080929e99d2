"""`kctl join SERVER --token T --discovery-token-ca-cert-hash sha256:H`
(kubeadm join's token discovery, for a node agent).

1. Fetch kube-public/cluster-info from the apiserver's HTTPS API
   (`--discovery-url`, else SERVER when it is an https:// URL, as
   `kctl token create --print-join-command` prints it, else
   https://HOST:8080) anonymously and without trusting the server yet:
   nothing is sent that a man in the middle could use (the token secret
   never leaves the node). The apiserver lets anyone read that one object
   (apiserver/auth/anonymous.py).
2. Check its `jws-kubeconfig-<token id>` signature with the token and the
   CA's public key hash against --discovery-token-ca-cert-hash
   (machinery/clusterinfo.py). Only then are the server and CA in it used.
3. Write the bootstrap kubeconfig (server, CA, token; mode 0600) to
   DIR/bootstrap-kubeconfig (`--dir`, default /etc/kctl).
4. Print the node agent command line, or with `-- AGENT-ARGS...` (e.g.
   `-- --node-ip 10.0.0.12 --root-dir /var/lib/kctl/n2`) exec
   `kctl-nodeagent` right away: it submits its CSR with the token, waits for
   the controller manager to approve and sign it, writes DIR/nodeagent.kubeconfig
   and registers the node.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request

import click

from kubectlish.common import Failed
from machinery import bootstraptoken as bt, certmanager, clusterinfo, client as apiclient

PATH = f"/api/v1/namespaces/{bt.CLUSTER_INFO_NAMESPACE}/configmaps/{bt.CLUSTER_INFO}"
HTTP_PORT = 8080


def discovery_urls(server: str, given: str) -> list[str]:
    """Where cluster-info is read: the HTTPS API only (the apiserver serves no plaintext)."""
    if given:
        return [given.rstrip("/")]
    if server.startswith("https://"):
        return [server.rstrip("/")]
    host = apiclient.normalize_target(server).rpartition(":")[0] or server
    return [f"https://{host}:{HTTP_PORT}"]


def fetch_cluster_info(urls: list[str], timeout: float = 10.0) -> dict:
    """cluster-info's data, from the first URL that answers (TLS not verified: see step 2)."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url + PATH, timeout=timeout, context=insecure) as r:
                return json.loads(r.read()).get("data") or {}
        except urllib.error.HTTPError as exc:
            problems.append(f"{url}: {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise Failed("error: couldn't fetch the cluster-info ConfigMap: " + "; ".join(problems))


def agent_command(dir_: str, node_name: str, extra: tuple[str, ...]) -> list[str]:
    return ["kctl-nodeagent", "--bootstrap-kubeconfig", os.path.join(dir_, "bootstrap-kubeconfig"),
            "--kubeconfig", os.path.join(dir_, "nodeagent.kubeconfig"), "--node-name", node_name, *extra]


@click.command("join", context_settings={"ignore_unknown_options": True})
@click.argument("server")
@click.option("--token", required=True, help="The bootstrap token (kctl token create on the control plane).")
@click.option("--discovery-token-ca-cert-hash", "ca_hashes", multiple=True,
              help="sha256:<hex> of the cluster CA's public key (kctl token create --print-join-command).")
@click.option("--discovery-token-unsafe-skip-ca-verification", "skip_ca", is_flag=True,
              help="Trust cluster-info's CA without pinning it (only the token signature is checked).")
@click.option("--discovery-url", default="", help="Base URL of the HTTP API to fetch cluster-info from.")
@click.option("--node-name", default="", help="The node's name (default: the host name).")
@click.option("--dir", "dir_", default="/etc/kctl", show_default=True, help="Where the kubeconfigs are written.")
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
def join_cmd(server, token, ca_hashes, skip_ca, discovery_url, node_name, dir_, agent_args):
    """Join this machine to a cluster as a node, with a bootstrap token."""
    try:
        _join(server, token, ca_hashes, skip_ca, discovery_url, node_name or socket.gethostname(), dir_,
              agent_args)
    except Failed as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)


def _join(server, token, ca_hashes, skip_ca, discovery_url, node_name, dir_, agent_args):
    try:
        bt.parse(token)
    except bt.BadToken as exc:
        raise Failed(f"error: {exc}") from None
    if not ca_hashes and not skip_ca:
        raise Failed("error: --discovery-token-ca-cert-hash is required (or "
                     "--discovery-token-unsafe-skip-ca-verification, which trusts whoever answers)")
    urls = discovery_urls(server, discovery_url)
    click.echo(f"[discovery] Fetching cluster-info from {' or '.join(urls)}")
    data = fetch_cluster_info(urls)
    try:
        api_server, ca = clusterinfo.verify(data, token, list(ca_hashes), unsafe_skip_ca_verification=skip_ca)
    except bt.BadToken as exc:
        raise Failed(f"error: {exc}") from None
    click.echo(f'[discovery] Cluster info signature and contents are valid and the CA matches the pinned hash, '
               f'will use API Server "{api_server}"')
    path = os.path.join(dir_, "bootstrap-kubeconfig")
    certmanager.write_kubeconfig(path, api_server, ca, token=token)
    click.echo(f"[kubeconfig] Wrote the bootstrap kubeconfig to {path}")
    cmd = agent_command(dir_, node_name, tuple(a for a in agent_args if a != "--"))
    if agent_args:
        exe = shutil.which(cmd[0]) or os.path.join(os.path.dirname(sys.executable), cmd[0])
        click.echo(f"[nodeagent] Starting {' '.join(cmd)}")
        sys.stdout.flush()
        os.execv(exe, [exe, *cmd[1:]])
    click.echo("\nStart the node agent with it (add --node-ip and --root-dir):\n\n  " + " ".join(cmd) + "\n\n"
               "It sends a certificate signing request, which the controller manager approves and signs;\n"
               "then run 'kctl get nodes' and 'kctl get csr' on the control plane to see this node join.")
