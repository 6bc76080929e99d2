"""The node agent's side of node join: `--bootstrap-kubeconfig`,
`--kubeconfig` and `--cert-dir` (machinery/certmanager.py does the work).

    kctl-nodeagent --bootstrap-kubeconfig /etc/kctl/bootstrap-kubeconfig \
                   --kubeconfig /etc/kctl/nodeagent.kubeconfig --cert-dir ROOT/pki ...

Before the agent starts, `ensure()` turns the bootstrap token into a client
certificate (CSR approved by the controller manager) and writes
--kubeconfig; `renewer()` is the task that renews it at 70-90% of its life.

`client_for(credentials)` builds the API client from a kubeconfig's
credentials. Until the TLS client lands in machinery/client.py this is the
plaintext Client with the bearer token sent as gRPC metadata
(`authorization: Bearer T`, which the apiserver's token authenticators read);
the client certificate is then unused. With TLS, the same function builds a
channel trusting the kubeconfig's CA with the token or client certificate.
"""
from __future__ import annotations

import os

from machinery import certmanager
from machinery.client import Client


class BearerClient(Client):
    """A Client that sends `authorization: Bearer <token>` with every call."""

    def __init__(self, target: str, token: str, **kw):
        super().__init__(target, **kw)
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def _call(self, method, request, timeout=None):
        wrapped = lambda req, timeout: method(req, timeout=timeout, metadata=self._metadata)  # noqa: E731
        return await super()._call(wrapped, request, timeout)


def client_for(creds: certmanager.Credentials, user_agent: str = "kctl-nodeagent") -> Client:
    if creds.token:
        return BearerClient(creds.server, creds.token, timeout=30, user_agent=user_agent)
    return Client(creds.server, timeout=30, user_agent=user_agent)


def add_arguments(p) -> None:
    p.add_argument("--bootstrap-kubeconfig", default="",
                   help="kubeconfig with a bootstrap token: get a client certificate with it (a CSR) when "
                        "--kubeconfig has none that is valid, and renew that certificate before it expires")
    if not any("--kubeconfig" in a.option_strings for a in p._actions):
        p.add_argument("--kubeconfig", default="", help="the agent's kubeconfig (written by the bootstrap)")
    p.add_argument("--cert-dir", default="", help="where the client certificate lives (default ROOT_DIR/pki)")


def cert_dir(args) -> str:
    return args.cert_dir or os.path.join(os.path.abspath(args.root_dir), "pki")


async def ensure(args) -> None:
    """Bootstrap the client certificate (a no-op without --bootstrap-kubeconfig)."""
    if not args.bootstrap_kubeconfig:
        return
    if not args.kubeconfig:
        raise SystemExit("kctl-nodeagent: --bootstrap-kubeconfig needs --kubeconfig (where to write the result)")
    await certmanager.bootstrap(kubeconfig=args.kubeconfig, bootstrap_kubeconfig=args.bootstrap_kubeconfig,
                                cert_dir=cert_dir(args), node_name=args.node_name, make_client=client_for)


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
