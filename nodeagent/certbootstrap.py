"""The node agent's side of node join: `--bootstrap-kubeconfig`,
`--kubeconfig` and `--cert-dir` (machinery/certmanager.py does the work).

    kctl-nodeagent --bootstrap-kubeconfig /etc/kctl/bootstrap-kubeconfig \
                   --kubeconfig /etc/kctl/nodeagent.kubeconfig --cert-dir ROOT/pki ...

Before the agent starts, `ensure()` turns the bootstrap token into a client
certificate (CSR approved by the controller manager) and writes
--kubeconfig; `renewer()` is the task that renews it at 70-90% of its life.
`serving_renewer()` (kubelet's --rotate-server-certificates, on by default
for a joined agent without --tls-cert-file) is the task that gets and
renews the logs/exec server's kubernetes.io/kubelet-serving certificate
(SANs: --node-ip and the node name) as the node; `serving_file()` is where
it is, which the server uses once it exists.

`client_for(credentials)` builds the API client from a kubeconfig's
credentials. The apiserver's gRPC port requires a client certificate in the
TLS handshake, so a bootstrap token can only be used over HTTPS: with a
token, the CSR is submitted and polled through the HTTP API
(certificates.k8s.io/v1, machinery/restclient.py) at the bootstrap
kubeconfig's https:// server, trusting its CA; with a client certificate
(renewal as the node) it is the gRPC Client at the kubeconfig's gRPC
address: the written kubeconfig carries the agent's --apiserver as its
`kctl.dev/grpc` extension, else the HTTPS host's port 6443
(machinery/kubeconfig.py's grpc_server).
"""
from __future__ import annotations

import argparse
import os

from machinery import certmanager, kubeconfig
from machinery.client import Client
from machinery.errors import ConfigError
from machinery.restclient import RestClient


def client_for(creds: certmanager.Credentials, user_agent: str = "kctl-nodeagent"):
    """An HTTPS client for a token, the gRPC Client for a client certificate (see the module docstring)."""
    if creds.cert_pem:
        return Client(creds.grpc or kubeconfig.grpc_server({"server": creds.server}), timeout=30,
                      user_agent=user_agent,
                      credentials=kubeconfig.Credentials(creds.ca_pem, creds.cert_pem, creds.key_pem))
    if not creds.token:
        raise ConfigError(f"no client certificate or token to reach {creds.server} with")
    if not creds.server.startswith("https://"):
        raise ConfigError(f"a bearer token authenticates only over HTTPS: the bootstrap kubeconfig's server must be "
                          f"https://HOST:PORT of the apiserver's HTTP API, not {creds.server!r}")
    return RestClient(creds.server, kubeconfig.Credentials(creds.ca_pem, token=creds.token), user_agent=user_agent)


def add_arguments(p) -> None:
    p.add_argument("--bootstrap-kubeconfig", default="",
                   help="kubeconfig with a bootstrap token: get a client certificate with it (a CSR) when "
                        "--kubeconfig has none that is valid, and renew that certificate before it expires")
    if not any("--kubeconfig" in a.option_strings for a in p._actions):
        p.add_argument("--kubeconfig", default="", help="the agent's kubeconfig (written by the bootstrap)")
    p.add_argument("--cert-dir", default="", help="where the client certificate lives (default ROOT_DIR/pki)")
    p.add_argument("--rotate-server-certificates", action=argparse.BooleanOptionalAction, default=True,
                   help="with --bootstrap-kubeconfig and no --tls-cert-file: request the logs/exec server's "
                        "certificate (signer kubernetes.io/kubelet-serving, SANs --node-ip and the node name) "
                        "with a CSR and renew it (default on)")


def cert_dir(args) -> str:
    return args.cert_dir or os.path.join(os.path.abspath(args.root_dir), "pki")


async def ensure(args) -> None:
    """Bootstrap the client certificate (a no-op without --bootstrap-kubeconfig)."""
    if not args.bootstrap_kubeconfig:
        return
    if not args.kubeconfig:
        raise SystemExit("kctl-nodeagent: --bootstrap-kubeconfig needs --kubeconfig (where to write the result)")
    await certmanager.bootstrap(kubeconfig=args.kubeconfig, bootstrap_kubeconfig=args.bootstrap_kubeconfig,
                                cert_dir=cert_dir(args), node_name=args.node_name, make_client=client_for,
                                grpc=args.apiserver or None)


def server(args) -> str:
    """The apiserver to use: --apiserver, else the server of --kubeconfig."""
    if args.apiserver or not args.kubeconfig:
        return args.apiserver
    return certmanager.load_kubeconfig(args.kubeconfig).server


def renewer(args, on_rotate=None) -> certmanager.Renewer | None:
    if not args.bootstrap_kubeconfig:
        return None
    return certmanager.Renewer(kubeconfig=args.kubeconfig, cert_dir=cert_dir(args), node_name=args.node_name,
                               make_client=client_for, on_rotate=on_rotate)


def serving_file(args) -> str:
    """The agent's CSR-signed serving certificate + key (it may not exist yet); '' when not used."""
    if (not getattr(args, "bootstrap_kubeconfig", "") or getattr(args, "tls_cert_file", None)
            or not getattr(args, "rotate_server_certificates", True)):
        return ""
    return os.path.join(cert_dir(args), certmanager.SERVING_CURRENT)


def serving_renewer(args) -> certmanager.Renewer | None:
    if not serving_file(args):
        return None
    return certmanager.Renewer(kubeconfig=args.kubeconfig, cert_dir=cert_dir(args), node_name=args.node_name,
                               make_client=client_for, kind=certmanager.serving([args.node_ip], [args.node_name]))
