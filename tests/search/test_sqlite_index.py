"""The embedded SQLite index: the shared contract, plus what only a file on disk can show."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from search.errors import IndexStoreError
from search.index.fts_query import MAX_QUERY_TERMS, fts_query, query_words
from search.index.sqlite import SqliteIndex
from search.models import Chunk
from tests.search.index_contract import (
    DIM,
    IndexContract,
    axis,
    doc_ids,
    entry,
    put,
    unit,
)
from tests.support import index_kill_writer

ROOT = Path(__file__).resolve().parents[2]
KILL_WRITER = Path(index_kill_writer.__file__)


class TestSqliteIndex(IndexContract):
    supports_knn = True
    isolated_reads = True

    @pytest.fixture
    async def index(self, tmp_path):
        index = SqliteIndex(tmp_path / "index.sqlite3")
        await index.open()
        yield index
        await index.close()


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "index.sqlite3"


@pytest.fixture
async def index(path):
    index = SqliteIndex(path)
    await index.open()
    yield index
    await index.close()


# ---- query parsing -------------------------------------------------------------------------------


def test_query_words_are_or_ed_and_quoted():
    assert fts_query("deploy script") == '"deploy" OR "script"'


def test_fts_keywords_and_syntax_are_neutralised():
    assert fts_query('NEAR(a, b) AND "c" OR d*') == '"NEAR" OR "b" OR "c" OR "d"'
    assert fts_query("title:x ^y {z}") == '"title" OR "x" OR "y" OR "z"'


def test_stop_words_are_dropped_unless_nothing_else_is_left():
    assert fts_query("what is the retention policy?") == '"retention" OR "policy"'
    assert fts_query("to be or not to be") == '"to" OR "be" OR "or" OR "not"'


def test_empty_and_punctuation_only_queries_give_no_expression():
    for query in ("", "  ", "?!", "🚀", "()", '"'):
        assert fts_query(query) is None


def test_repeated_words_count_once_and_long_queries_are_capped():
    assert fts_query("Cache cache CACHE miss") == '"Cache" OR "miss"'
    long_query = " ".join(f"w{i}" for i in range(500))
    assert fts_query(long_query).count(" OR ") == MAX_QUERY_TERMS - 1


def test_cjk_queries_become_bigrams():
    assert query_words("东京数据") == ["东京", "京数", "数据"]
    assert query_words("API 文档") == ["API", "文档"]


async def test_random_queries_never_raise_syntax_errors(index):
    await put(index, entry("d", "fuzz target text with café and 東京"))
    rng = random.Random(7)
    alphabet = 'abcAND OR NOT NEAR"\'()*^:{}+-,.;!?\\/\t\n é東京🚀ß_%\x00'
    for _ in range(400):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        await index.bm25(query, 3)
        await index.bm25(query, 3, ["wiki", query])


# ---- text handling specific to the FTS5 tokenizer -----------------------------------------------


async def test_diacritics_are_folded(index):
    await put(index, entry("d", "Meet at the café in Zürich."), entry("o", "Other text."))
    assert doc_ids(await index.bm25("cafe zurich", 5)) == ["d"]
    assert doc_ids(await index.bm25("CAFÉ", 5)) == ["d"]


async def test_a_query_of_stop_words_only_still_searches(index):
    await put(index, entry("d", "To be or not to be."), entry("o", "Other text."))
    assert doc_ids(await index.bm25("to be", 5)) == ["d"]


# ---- persistence and versions --------------------------------------------------------------------


async def test_reopening_the_file_keeps_everything(path):
    async with SqliteIndex(path) as index:
        await put(
            index,
            entry("a", "persistent badger", vectors=[axis(0)], path="a.md"),
            entry("b", "another badger", source="drive", vectors=[axis(1)]),
        )
        before = (await index.documents(), await index.source_stats(), await index.version())
    async with SqliteIndex(path) as index:
        after = (await index.documents(), await index.source_stats(), await index.version())
        assert after == before
        assert doc_ids(await index.bm25("badger", 5, ["wiki"])) == ["a"]
        assert doc_ids(await index.knn(axis(1), 2)) == ["b", "a"]


async def test_the_index_opens_lazily(path):
    index = SqliteIndex(path)
    assert not path.exists()
    try:
        assert await index.bm25("anything", 5) == []
        assert path.exists()
    finally:
        await index.close()


async def test_every_commit_bumps_the_version_and_a_rollback_does_not(index):
    assert await index.version() == 0
    await put(index, entry("a", "x"))
    assert await index.version() == 1
    async with index.transaction():
        pass
    assert await index.version() == 2
    with pytest.raises(RuntimeError):
        async with index.transaction() as writer:
            await writer.upsert(*entry("b", "y"))
            raise RuntimeError
    assert await index.version() == 2


async def test_own_commits_keep_the_vector_matrix_in_step(path, index, caplog):
    # Writes patch the in-memory matrix; a fresh index reads the file. Both must agree.
    query = unit(1, 2, 3, 4, 5, 6, 7, 8)
    with caplog.at_level(logging.DEBUG, logger="search.index.sqlite"):
        await put(index, *(entry(f"d{i}", f"t{i}", f"u{i}") for i in range(5)))
        await index.knn(query, 3)
        async with index.transaction() as writer:
            await writer.delete("d1")
            await writer.upsert(*entry("d2", "replaced", vectors=[unit(1, 2, 3)]))
            await writer.upsert(*entry("d9", "new", source="drive"))
        await index.knn(query, 3)
    assert not [r for r in caplog.records if "loaded" in r.getMessage()], "matrix was reread"
    async with SqliteIndex(path) as fresh:
        for sources in (None, ["wiki"], ["drive"]):
            mine = [(h.chunk_id, round(h.score, 6)) for h in await index.knn(query, 20, sources)]
            theirs = [(h.chunk_id, round(h.score, 6)) for h in await fresh.knn(query, 20, sources)]
            assert mine == theirs
    assert len(await index.knn(query, 20)) == 8  # 10 chunks, -2 deleted, -1 replaced, +1 new


# ---- errors --------------------------------------------------------------------------------------


async def test_a_vector_of_another_dimension_is_refused(index):
    await put(index, entry("a", "eight dims"))
    with pytest.raises(IndexStoreError, match="another embedding model") as info:
        await put(index, entry("b", "four dims", vectors=[np.ones(4, np.float32) / 2]))
    assert "rebuild" in str(info.value).lower()
    assert set(await index.documents()) == {"a"}  # the failed transaction rolled back
    with pytest.raises(IndexStoreError, match="another embedding model"):
        await index.knn(np.ones(4, np.float32) / 2, 3)


async def test_the_dimension_is_remembered_in_the_file(path):
    async with SqliteIndex(path) as index:
        await put(index, entry("a", "eight dims"))
    async with SqliteIndex(path) as index:
        with pytest.raises(IndexStoreError, match="another embedding model"):
            await put(index, entry("b", "four", vectors=[np.ones(4, np.float32) / 2]))


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 100, b"SQLite format 3\x00" + os.urandom(8192)],
    ids=["not-sqlite", "garbage-after-header"],
)
async def test_a_corrupt_file_is_named_with_what_to_do(path, content):
    path.write_bytes(content)
    index = SqliteIndex(path)
    with pytest.raises(IndexStoreError) as info:
        await index.open()
    message = str(info.value)
    assert str(path) in message and "reindex" in message
    await index.close()


async def test_a_foreign_sqlite_database_is_not_taken_over(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(IndexStoreError, match="not a lorebot index"):
        await SqliteIndex(path).open()


async def test_a_directory_is_not_an_index(tmp_path):
    with pytest.raises(IndexStoreError, match="directory"):
        await SqliteIndex(tmp_path).open()


async def test_a_chunk_id_owned_by_another_document_is_refused(index):
    await put(index, entry("a", "x"))
    doc, _, vectors = entry("b", "y")
    stolen = [Chunk("a#0", "b", 0, "y", doc.title)]
    with pytest.raises(IndexStoreError, match="a#0"):
        async with index.transaction() as writer:
            await writer.upsert(doc, stolen, vectors)
    assert set(await index.documents()) == {"a"}


async def test_a_failed_upsert_leaves_nothing_and_the_transaction_goes_on(index):
    await put(index, entry("a", "alpha okapi"), entry("b", "original okapi", vectors=[axis(2)]))
    doc, _, _ = entry("b", "x")
    half_bad = [Chunk("b#new", "b", 0, "replacement okapi", doc.title),
                Chunk("a#0", "b", 1, "clashes with a", doc.title)]
    async with index.transaction() as writer:
        with pytest.raises(IndexStoreError, match="a#0"):
            await writer.upsert(doc, half_bad, np.stack([axis(0), axis(1)]))
        await writer.upsert(*entry("c", "third okapi", vectors=[axis(3)]))
    # "b" kept its previous version, whole; "c" was committed with it.
    assert {h.text for h in await index.bm25("okapi", 10)} == {
        "alpha okapi", "original okapi", "third okapi"
    }
    assert doc_ids(await index.knn(axis(2), 1)) == ["b"]
    assert [h.chunk_id for h in await index.knn(axis(0), 10) if h.doc_id == "b"] == ["b#0"]
    [stats] = await index.source_stats()
    assert (stats.documents, stats.chunks) == (3, 3)


async def test_vectors_must_match_the_chunks(index):
    doc, chunks, _ = entry("a", "one", "two")
    async with index.transaction() as writer:
        with pytest.raises(ValueError, match="one vector per chunk"):
            await writer.upsert(doc, chunks, np.ones((1, DIM), np.float32))
        with pytest.raises(ValueError, match="NaN"):
            await writer.upsert(doc, chunks, np.full((2, DIM), np.nan, np.float32))


async def test_a_writer_is_dead_after_its_transaction(index):
    async with index.transaction() as writer:
        pass
    with pytest.raises(IndexStoreError, match="after its transaction"):
        await writer.upsert(*entry("a", "x"))


async def test_a_closed_index_refuses_work(path):
    index = SqliteIndex(path)
    await index.open()
    await index.close()
    await index.close()  # idempotent
    with pytest.raises(IndexStoreError, match="closed"):
        await index.bm25("x", 3)


async def test_a_cancelled_transaction_rolls_back_and_frees_the_lock(index):
    started = asyncio.Event()

    async def slow_writer():
        async with index.transaction() as writer:
            await writer.upsert(*entry("a", "cancelled capybara"))
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(slow_writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await index.documents() == {}
    await put(index, entry("b", "later capybara"))
    assert doc_ids(await index.bm25("capybara", 5)) == ["b"]


# ---- several connections and processes ----------------------------------------------------------


async def test_another_connection_sees_commits_and_reloads_vectors(path, index):
    await put(index, entry("a", "first quokka", vectors=[axis(0)]))
    async with SqliteIndex(path) as other:
        assert doc_ids(await other.knn(axis(3), 5)) == ["a"]  # loads its matrix now
        await put(index, entry("b", "second quokka", vectors=[axis(3)]))
        assert doc_ids(await other.knn(axis(3), 5)) == ["b", "a"]
        assert set(doc_ids(await other.bm25("quokka", 5))) == {"a", "b"}
        assert await other.version() == await index.version() == 2
        # And the other way round: this index reloads after the other one commits.
        async with other.transaction() as writer:
            await writer.delete("a")
        assert doc_ids(await index.knn(axis(0), 5)) == ["b"]


async def test_a_second_writer_waits_without_blocking_searches(path, index):
    await put(index, entry("a", "patient walrus"))
    holder_ready, release = asyncio.Event(), asyncio.Event()

    async def hold_the_lock():
        async with SqliteIndex(path) as other:
            async with other.transaction() as writer:
                await writer.upsert(*entry("b", "busy walrus"))
                holder_ready.set()
                await release.wait()

    holder = asyncio.create_task(hold_the_lock())
    await holder_ready.wait()
    index.lock_timeout_s = 0.3
    with pytest.raises(IndexStoreError, match="locked by another writer"):
        async with index.transaction():
            pass
    # Searches kept working, and still show only committed data.
    assert doc_ids(await index.bm25("walrus", 5)) == ["a"]
    index.lock_timeout_s = 10
    waiting = asyncio.create_task(put(index, entry("c", "eventual walrus")))
    await asyncio.sleep(0.1)
    assert doc_ids(await index.bm25("walrus", 5)) == ["a"]  # served while the writer waits
    release.set()
    await holder
    await waiting
    assert set(doc_ids(await index.bm25("walrus", 5))) == {"a", "b", "c"}


async def _spawn_writer(path: Path, count: int, mode: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(KILL_WRITER), str(path), str(count), mode,
        stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )


async def test_a_commit_from_another_process_is_seen(path, index):
    await put(index, entry("mine", "local text", vectors=[axis(0)]))
    assert doc_ids(await index.knn(axis(7), 5)) == ["mine"]
    proc = await _spawn_writer(path, 3, "commit")
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and index_kill_writer.COMMITTED in out.decode()
    hits = await index.knn(axis(7), 10)
    assert {h.doc_id for h in hits} == {"mine", "writer-0", "writer-1", "writer-2"}
    assert hits[0].source == "writer"
    assert set(doc_ids(await index.bm25("marmot1", 5))) == {"writer-1"}


async def test_a_writer_killed_mid_transaction_leaves_the_previous_index(path, index):
    previous = [
        entry("a", "surviving armadillo", vectors=[axis(0)], content_hash="ha"),
        entry("b", "another survivor", source="drive", vectors=[axis(1)], content_hash="hb"),
    ]
    await put(index, *previous)
    documents, stats, version = (
        await index.documents(), await index.source_stats(), await index.version()
    )
    wal = path.with_name(path.name + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0

    proc = await _spawn_writer(path, 1500, "hang")
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.decode().strip() == index_kill_writer.MID_TRANSACTION
        # Uncommitted pages reached the WAL file: the kill hits a half-written transaction.
        assert wal.stat().st_size > wal_before
        # Meanwhile readers see only the committed state, and the file opens normally.
        assert await index.bm25("marmot1", 5) == []
        async with SqliteIndex(path) as during:
            assert await during.documents() == documents
            assert set(doc_ids(await during.knn(axis(7), 5))) == {"a", "b"}
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await index.close()

    async with SqliteIndex(path) as reopened:
        assert await reopened.documents() == documents
        assert await reopened.source_stats() == stats
        assert await reopened.version() == version
        assert doc_ids(await reopened.bm25("armadillo", 5)) == ["a"]
        assert await reopened.bm25("marmot1", 5) == []
        assert doc_ids(await reopened.knn(axis(1), 2)) == ["b", "a"]
        # The dead writer's lock is gone: the index takes writes again.
        await put(reopened, entry("c", "new armadillo"))
        assert set(doc_ids(await reopened.bm25("armadillo", 5))) == {"a", "c"}
