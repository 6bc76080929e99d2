"""Columns of the service-discovery kinds (EndpointSlice), as kubectl prints them;
registered into machinery.tables.PRINTERS like the workload kinds."""
from __future__ import annotations

from machinery.tables import Printer, _all, _cols, age


def more(items: list[str], count: int, limit: int = 3) -> str:
    """kubectl's listWithMoreString: the first LIMIT items, "+ N more...", "<unset>" when empty."""
    s = ",".join(items[:limit])
    if count > limit:
        return f"{s} + {count - limit} more..."
    return s or "<unset>"


def _endpoint_slice(es, wide, at):
    """printEndpointSlice: ports (number, else name, else *) and addresses, three of each at most."""
    ports = [str(p.port) if p.HasField("port") else (p.name if p.HasField("name") else "*") for p in es.ports]
    addrs = [a for e in es.endpoints for a in e.addresses]
    return [es.metadata.name, es.address_type, more(ports, len(ports)), more(addrs, len(addrs)),
            age(es.metadata.creation_timestamp, at)]


NETWORK_PRINTERS = {
    "EndpointSlice": Printer(_cols("NAME|ADDRESSTYPE|PORTS|ENDPOINTS|AGE"), _all(_endpoint_slice)),
}
