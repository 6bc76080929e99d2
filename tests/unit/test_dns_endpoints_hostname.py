"""The Endpoints controller names an address after its pod's `hostname` when the
pod's `subdomain` is the Service (Kubernetes' podToEndpointAddressForService):
that is what gives a pod its DNS name HOSTNAME.SVC.NS.svc.cluster.local."""
from controllers.endpoints import EndpointsController
from tests.unit.test_controller_endpoints_gc import pod, service
from tests.unit.test_controller_helpers import harness, set_ready


async def test_hostname_only_for_pods_whose_subdomain_is_the_service():
    async with harness(lambda h: EndpointsController(h.client, h.factory)) as (h, c):
        await h.client.create(service())
        for name, hostname, subdomain, ip in (("a", "web-0", "web", "10.0.0.1"), ("b", "web-1", "other", "10.0.0.2"),
                                              ("c", "", "web", "10.0.0.3")):
            p = pod(name)
            p.spec.hostname, p.spec.subdomain = hostname, subdomain
            await h.client.create(p)
            await h.client.update_status(set_ready(h.client.stored("Pod", name), True, 0, ip=ip))
        await h.settle()
        await c.sync("default/web")
        await h.settle()
        ep = h.client.stored("Endpoints", "web")
        assert [(a.ip, a.hostname) for s in ep.subsets for a in s.addresses] == \
            [("10.0.0.1", "web-0"), ("10.0.0.2", ""), ("10.0.0.3", "")]
