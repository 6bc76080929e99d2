"""POST routes of the create-only review APIs (apiserver/auth/reviews.py):
`/apis/authorization.k8s.io/v1/selfsubjectaccessreviews` and friends, and
the namespaced localsubjectaccessreviews. The
body may be JSON, YAML or Kubernetes protobuf (kubectl's typed client);
the answer is JSON with 201 Created. `verbs.reviews` answers them."""
from __future__ import annotations

from aiohttp import web

from apiserver.auth import reviews, user as users
from apiserver.http import wire
from machinery import errors


def routes(verbs) -> list:
    def handler(review: reviews.Review):
        async def create(request: web.Request) -> web.Response:
            body = await wire.read_body(request)
            data = wire.parse_document(body, request.headers.get("Content-Type", wire.JSON))
            namespace = request.match_info.get("namespace", "")
            if namespace:                       # a LocalSubjectAccessReview: the URL's namespace
                meta = data.setdefault("metadata", {})
                if meta.get("namespace", namespace) != namespace:
                    raise errors.BadRequest("the namespace of the provided object does not match the namespace "
                                            "sent on the request")
                meta["namespace"] = namespace
            obj = reviews.decode(review, data)
            out = await verbs.reviews.review(review, obj, users.current())
            return wire.respond(reviews.to_json(out), 201)
        return create
    local = reviews.LOCAL
    return [web.post(f"/apis/{r.group}/v1/{r.plural}", handler(r)) for r in reviews.REVIEWS] + [
        web.post(f"/apis/{local.group}/v1/namespaces/{{namespace}}/{local.plural}", handler(local))]
