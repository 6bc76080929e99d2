"""Client side of the resource metrics API (proto/metrics.proto, served by the
apiserver's apiserver/metricsapi.py): the HPA controller and `kctl top` read
NodeMetrics and PodMetrics through the Client's channel. Failures are
machinery.errors.ApiError (errors.from_rpc_error), e.g. NotFound for a named
pod that has no metrics yet."""
from __future__ import annotations

import grpc

from machinery import errors
from machinery.pb import metrics_pb2, metrics_pb2_grpc


async def _call(client, method: str, request, timeout: float | None):
    stub = metrics_pb2_grpc.MetricsStub(client.channel)
    try:
        return await getattr(stub, method)(request, timeout=timeout or client.timeout)
    except grpc.aio.AioRpcError as exc:
        raise errors.from_rpc_error(exc, client.target) from exc


async def pod_metrics(client, namespace: str = "", name: str = "", label_selector: str = "",
                      timeout: float | None = None) -> list[metrics_pb2.PodMetrics]:
    req = metrics_pb2.MetricsRequest(namespace=namespace, name=name, label_selector=label_selector)
    return list((await _call(client, "ListPodMetrics", req, timeout)).items)


async def node_metrics(client, name: str = "", label_selector: str = "",
                       timeout: float | None = None) -> list[metrics_pb2.NodeMetrics]:
    req = metrics_pb2.MetricsRequest(name=name, label_selector=label_selector)
    return list((await _call(client, "ListNodeMetrics", req, timeout)).items)
