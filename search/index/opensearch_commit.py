"""How the OpenSearch backend's writes reach the cluster: a transaction's commit, a rebuild.

``OpenSearchIndex.transaction()`` and ``OpenSearchIndex.rebuild()`` run these; the writers they
hand out are in ``opensearch_writers``, the bodies they send in ``opensearch_records``.

How writes become visible, and what is and is not atomic
--------------------------------------------------------

OpenSearch has no multi-document transactions. This backend gets as close as the engine allows,
and is plain about the rest:

``transaction()``
    Writes are buffered on the client (in memory, spilling to a temporary file past
    ``spool_memory_mb``), so nothing reaches the cluster before the block exits: an exception
    inside the block, or a process killed inside it, leaves the index exactly as it was. On a
    normal exit the commit runs, against the physical index the alias names at that moment:

    0. refresh, so leftovers of a commit that died half-way are visible to step 2;
    1. bulk-index the new chunk records of every upserted document, tagged with this commit's
       ``write_id`` (``helpers.async_bulk``, retrying 429 rejections with exponential backoff);
    2. delete-by-query every record of the touched documents (and of cleared sources) that this
       commit did not write: old chunks, deleted documents;
    3. bulk-index the document records (content hash, chunk count);
    4. refresh.

    Physical indexes are created with ``refresh_interval: -1``, so searches see the index as of
    the last refresh: a finished commit appears at step 4, not bulk by bulk. That is not an
    atomic snapshot: each shard refreshes on its own (a search may, for milliseconds, see one
    shard before and another after), a replica may refresh a moment after its primary, and a
    shard that recovers or relocates opens with everything written so far. A commit that dies
    between steps 1 and 4 leaves its writes to appear at the next refresh; because document
    records are written last (step 3), such a document still carries its old content hash (or
    none), so the next indexing run rewrites it and step 2 removes the leftovers (a new document
    that vanished from its source before that run leaves orphan chunks, until a rebuild).
    Concurrent commits from several processes are not serialised: per document, the last commit
    wins.
    Within one process, commits run one at a time.

``rebuild()``
    A full rebuild writes into a new physical index that nobody reads, then moves the alias in
    one ``_aliases`` request (remove from the old index + add to the new one), which OpenSearch
    applies atomically. The new index is built without replicas; they are added at the end,
    and the alias moves only once the new index is green (every replica allocated and
    recovered), or, when the old index is not green either (a node lost), no less healthy than
    it after one 10 s wait: deleting the old index then never leaves fewer copies of the data.
    Past ``health_timeout_s`` the rebuild fails like any other. A rebuild that fails or is
    cancelled deletes its new index, and readers never left the old one; the old index is
    deleted only after the swap succeeded. Commits of ``transaction()`` that run during a
    rebuild go to the old index and are lost with it: run rebuilds when no indexing is running.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from search.errors import IndexStoreError
from search.index.opensearch_cluster import ClusterAccess
from search.index.opensearch_records import (
    chunk_actions,
    document_action,
    source_records_query,
    stale_records_query,
)
from search.index.opensearch_writers import OpenSearchRebuildWriter, Spool

# The name the index logged under before its commits moved here, so log settings keep applying.
logger = logging.getLogger("search.index.opensearch")

# Documents per delete-by-query: well under OpenSearch's 65,536-term limit, small enough that
# one request stays short.
_DELETE_BATCH = 1000


async def commit_transaction(index: ClusterAccess, spool: Spool) -> None:
    """Send the buffered writes of one ``transaction()`` (the steps in the module docstring)."""
    if spool.empty:
        return
    live = await index._live()
    if live is None:
        if not spool.upserts:
            return  # deletes against an index that does not exist yet: nothing to do
        live = await index._create_first(spool.dim)
    if spool.dim is not None:
        if live.dim is None:
            await index._add_vector_field(live.index, spool.dim)
        elif live.dim != spool.dim:
            raise index._dimension_error(spool.dim, live.dim)
    target, write_id = live.index, uuid.uuid4().hex
    combined = index.weights if live.combined else None
    await index._refresh(target)

    async def chunk_records() -> AsyncIterator[dict[str, Any]]:
        async for document, chunks, vectors in spool.final_upserts():
            for action in chunk_actions(target, document, chunks, vectors, write_id, combined):
                yield action

    await index._bulk(chunk_records(), f"writing chunks to {target}")
    touched = list(spool.last_op)
    for start in range(0, len(touched), _DELETE_BATCH):
        batch = touched[start : start + _DELETE_BATCH]
        await index._delete_by_query(target, stale_records_query(batch, write_id))
    for source in spool.cleared:
        await index._delete_by_query(target, source_records_query(source, write_id))

    async def document_records() -> AsyncIterator[dict[str, Any]]:
        now = time.time()
        async for document, chunks, _ in spool.final_upserts():
            yield document_action(target, document, len(chunks), write_id, now)

    await index._bulk(document_records(), f"writing documents to {target}")
    await index._refresh(target)


_HEALTH_RANK = {"red": 0, "yellow": 1, "green": 2}
# Seconds per cluster-health request: well under the client's request timeout, so a long wait is
# several short server-side waits, never a client timeout.
_HEALTH_POLL_S = 10.0


async def _health(index: ClusterAccess, name: str, params: dict[str, str]) -> dict[str, Any]:
    # Through the transport, not `client.cluster.health`: opensearch-py takes a `timeout` query
    # parameter (keyword or in `params`) as its own request timeout, in seconds, unless a
    # request timeout is given, so the cluster's wait ("10s") never reached the server. Here
    # the request timeout is explicit and outlasts the server-side wait.
    return await index._call(
        f"checking the health of {name}",
        index.client.transport.perform_request(
            "GET", f"/_cluster/health/{quote(name, safe='')}", params=params,
            # 408 is the cluster saying "not that healthy yet" (timed_out in the body).
            timeout=_HEALTH_POLL_S + 30, ignore=(408,)))


async def _wait_as_healthy(index: ClusterAccess, target: str, current: list[str]) -> None:
    """Wait until ``target`` is green, or as healthy as the live index when that is not green
    (at least yellow); raise after ``health_timeout_s``.

    Without this the old index was deleted the moment the alias moved, while the new index's
    replicas were still being allocated: a node lost then lost the only copy of the data.
    Green is asked first and the old index looked at only when a wait for it ran out: an old
    index that is yellow for a moment (a replica recovering) must not lower the bar, while on
    a cluster that has lost a node (the old index yellow too) the rebuild proceeds after one
    poll instead of failing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + index.health_timeout_s
    while True:
        wait = max(1, int(min(_HEALTH_POLL_S, deadline - loop.time())))
        health = await _health(index, target, {"wait_for_status": "green", "timeout": f"{wait}s"})
        got = _HEALTH_RANK.get(health.get("status", "red"), 0)
        if not health.get("timed_out") and got == _HEALTH_RANK["green"]:
            return
        old = [_HEALTH_RANK.get((await _health(index, name, {})).get("status", "red"), 0)
               for name in current]
        bar = max([_HEALTH_RANK["yellow"], *old])
        if bar < _HEALTH_RANK["green"] and got >= bar:
            logger.warning("moving the alias to %s while it is %s: the live index is no better",
                           target, health.get("status"))
            return
        if loop.time() >= deadline:
            break
    raise IndexStoreError(
        f"the rebuilt index {target} did not reach green health within "
        f"{index.health_timeout_s:g} s: it is {health.get('status')} with "
        f"{health.get('unassigned_shards')} unassigned shard(s) (too few nodes for "
        f"{index.layout.replicas} replica(s)?); the alias stays on "
        f"{', '.join(current) or 'nothing'} and {target} is deleted")


@asynccontextmanager
async def rebuild_index(
    index: ClusterAccess, dim: int | None = None
) -> AsyncIterator[OpenSearchRebuildWriter]:
    """A writer into a new, empty physical index that replaces the live one on success.

    ``dim`` (the embedding dimension) maps the vector field up front; without it the
    first vector decides. See the module docstring.
    """
    await index._put_template()
    current = await index._alias_targets()
    target = index.layout.physical(await index._next_version())
    # No replicas while it is built: every bulk would be written twice for nothing.
    body = index.layout.create_body(dim, alias=False, replicas=0)
    await index._call(f"creating {target}", index.client.indices.create(index=target, body=body))
    writer = OpenSearchRebuildWriter(index, target, dim)
    try:
        yield writer
        await writer.flush()
        await index._refresh(target)
        if index.layout.replicas:
            settings = {"index": {"number_of_replicas": index.layout.replicas}}
            await index._call(
                f"setting replicas of {target}",
                index.client.indices.put_settings(index=target, body=settings),
            )
        await _wait_as_healthy(index, target, current)
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": index.layout.alias}} for old in current
        ]
        actions.append({"add": {"index": target, "alias": index.layout.alias}})
        await index._call(
            f"moving the alias '{index.layout.alias}' to {target}",
            index.client.indices.update_aliases(body={"actions": actions}),
        )
    except BaseException:
        writer._active = False
        await asyncio.shield(index._drop(target))
        raise
    writer._active = False
    logger.info("alias %s now on %s (was %s)", index.layout.alias, target, current)
    for old in current:
        await index._drop(old)
