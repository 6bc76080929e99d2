"""The apiserver compacts etcd periodically, keeping one interval of history."""
import asyncio
import base64
import urllib.error

import pytest

from machinery import kinds


def _readable_at(etcd, revision: int) -> bool:
    """Can etcd still serve a read at this revision (i.e. not compacted)?"""
    try:
        etcd._post("/v3/kv/range", {"key": base64.b64encode(b"/registry/").decode(),
                                     "range_end": base64.b64encode(b"/registry0").decode(),
                                     "count_only": True, "revision": revision})
        return True
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        assert "compacted" in body, body
        return False


@pytest.mark.apiserver_args("--etcd-compaction-interval", "1")
async def test_old_revisions_are_compacted(etcd, apiserver, client):
    ns = kinds.new("Namespace")
    ns.metadata.name = "compact-me"
    created = await client.create(ns)
    old_rv = int(created.metadata.resource_version)
    for i in range(5):
        created.metadata.labels["n"] = str(i)
        created = await client.update(created)
    assert _readable_at(etcd, old_rv)
    for _ in range(100):  # compaction runs every second, one interval behind
        if not _readable_at(etcd, old_rv):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("etcd was never compacted past the namespace's first revision")
    # Reads and lists keep working on the compacted store.
    items, rv = await client.list("Namespace")
    assert any(n.metadata.name == "compact-me" for n in items) and int(rv) >= int(created.metadata.resource_version)


async def test_compaction_is_off_with_zero_interval(etcd, tmp_path):
    from tests.cluster import ApiServer
    api = ApiServer(etcd, tmp_path / "api0", extra_args=["--etcd-compaction-interval", "0"])
    api.start()
    try:
        first = etcd.revision()
        await asyncio.sleep(2.5)
        assert _readable_at(etcd, first)
    finally:
        api.stop()
