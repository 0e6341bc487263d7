"""The contract every ``SearchIndex`` backend passes, written once and subclassed per backend.

A backend's test module subclasses ``IndexContract`` (the name does not start with ``Test``, so
pytest collects only the subclasses) and provides an async fixture ``index`` that yields an empty
index. Class attributes describe what a backend can show:

* ``supports_knn``: False skips the tests that need vector search (a test server without k-NN).
* ``isolated_reads``: False skips the test that searches while a transaction is open (a backend
  may be unable to show isolation from inside the writing process).

Vectors are small hand-made unit vectors (``DIM`` = 8), so no model is needed and the expected
nearest neighbours are obvious from the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest

from search.index.base import SearchIndex
from search.models import Chunk, Document, Hit, StoredDocument

DIM = 8

Entry = tuple[Document, list[Chunk], np.ndarray]


def unit(*components: float) -> np.ndarray:
    """An L2-normalised float32 vector of ``DIM`` dimensions from its leading components."""
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


def axis(i: int) -> np.ndarray:
    """The unit vector along dimension ``i``."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def entry(
    doc_id: str,
    *texts: str,
    source: str = "wiki",
    title: str = "",
    headings: Sequence[str] = (),
    vectors: Sequence[np.ndarray] | None = None,
    content_hash: str | None = None,
    path: str | None = None,
    url: str | None = None,
) -> Entry:
    """A document with one chunk per text, ready for ``upsert``.

    Without explicit vectors each chunk gets a distinct fixed vector derived from its id, so
    k-NN has something to rank but no test depends on it by accident.
    """
    doc = Document(
        doc_id=doc_id,
        source=source,
        title=title or f"Title of {doc_id}",
        text="\n\n".join(texts),
        content_hash=content_hash or f"hash-{doc_id}",
        path=path,
        url=url,
    )
    chunks = [
        Chunk(f"{doc_id}#{i}", doc_id, i, text, doc.title, tuple(headings))
        for i, text in enumerate(texts)
    ]
    if vectors is None:
        rng = np.random.default_rng(sum(map(ord, doc_id)))
        vectors = [unit(*rng.standard_normal(DIM)) for _ in texts]
    matrix = np.stack(vectors).astype(np.float32) if texts else np.zeros((0, DIM), np.float32)
    return doc, chunks, matrix


async def put(index: SearchIndex, *entries: Entry) -> None:
    """Upsert entries in one committed transaction."""
    async with index.transaction() as writer:
        for doc, chunks, vectors in entries:
            await writer.upsert(doc, chunks, vectors)


def doc_ids(hits: Sequence[Hit]) -> list[str]:
    return [h.doc_id for h in hits]


def chunk_ids(hits: Sequence[Hit]) -> list[str]:
    return [h.chunk_id for h in hits]


class _Boom(Exception):
    """Raised inside a transaction to make it roll back."""


# Queries that a naive FTS or query-string translation would choke on.
WEIRD_QUERIES = [
    "",
    "   ",
    '"',
    '"unbalanced quote',
    "it's a \"quoted\" 'thing'",
    "(",
    "((deploy)",
    "deploy)",
    "AND",
    "OR NOT",
    "deploy AND",
    "NOT deploy",
    "NEAR(deploy script, 2)",
    "*",
    "deploy*",
    "^deploy",
    "title:deploy",
    "{title}: deploy",
    "-deploy +script",
    "a OR b AND c NOT d",
    "🚀",
    "deploy 🚀 now",
    "?!?.,;:",
    "\\ / \x00 \t\n",
    "%_%",
    "deploy' ; DROP TABLE documents; --",
    "ß é ﬁ İ",
    "x" * 2000,
    " ".join(["deploy"] * 300),
]


class IndexContract:
    """Behaviour every index backend shares; subclass and provide an ``index`` fixture."""

    supports_knn = True
    isolated_reads = True

    def need_knn(self) -> None:
        if not self.supports_knn:
            pytest.skip("this backend cannot run k-NN queries here")

    # ---- empty index ---------------------------------------------------------------------------

    async def test_empty_index_answers_nothing(self, index: SearchIndex) -> None:
        assert await index.bm25("anything at all", 10) == []
        assert await index.documents() == {}
        assert await index.source_stats() == []
        if self.supports_knn:
            assert await index.knn(axis(0), 10) == []

    # ---- writing and finding -------------------------------------------------------------------

    async def test_upserted_chunk_is_found_by_bm25_with_its_fields(self, index) -> None:
        await put(
            index,
            entry(
                "ops/deploy.md",
                "Run the deploy script from the release branch.",
                title="Deploy guide",
                headings=("Operations", "Releases"),
                path="ops/deploy.md",
                url="https://wiki.example/ops/deploy",
            ),
            entry("cooking.md", "Whisk the eggs before adding flour."),
        )
        hits = await index.bm25("deploy script", 5)
        assert doc_ids(hits) == ["ops/deploy.md"]
        hit = hits[0]
        assert hit.chunk_id == "ops/deploy.md#0"
        assert hit.source == "wiki"
        assert hit.title == "Deploy guide"
        assert hit.text == "Run the deploy script from the release branch."
        assert hit.headings == ("Operations", "Releases")
        assert hit.path == "ops/deploy.md"
        assert hit.url == "https://wiki.example/ops/deploy"
        assert hit.score > 0

    async def test_upserted_chunk_is_found_by_knn_with_cosine_scores(self, index) -> None:
        self.need_knn()
        await put(
            index,
            entry("a", "alpha", vectors=[axis(0)]),
            entry("b", "beta", vectors=[unit(1, 1)]),
            entry("c", "gamma", vectors=[axis(2)]),
        )
        hits = await index.knn(axis(0), 3)
        assert doc_ids(hits) == ["a", "b", "c"]
        assert [h.score for h in hits] == pytest.approx([1.0, 2**-0.5, 0.0], abs=1e-5)
        for hit in hits:
            assert hit.similarity == pytest.approx(hit.score)
        assert hits[0].text == "alpha" and hits[0].source == "wiki"

    async def test_knn_returns_chunks_of_one_document_separately(self, index) -> None:
        self.need_knn()
        await put(index, entry("doc", "first", "second", vectors=[axis(0), axis(1)]))
        hits = await index.knn(axis(1), 2)
        assert chunk_ids(hits) == ["doc#1", "doc#0"]

    async def test_title_words_are_searchable(self, index) -> None:
        await put(
            index,
            entry("t", "Nothing here mentions the subject.", title="Kubernetes upgrade runbook"),
            entry("u", "Unrelated text about gardening."),
        )
        assert doc_ids(await index.bm25("kubernetes", 5)) == ["t"]

    async def test_heading_words_are_searchable(self, index) -> None:
        await put(
            index,
            entry("h", "Set the value in the config file.", headings=("Retention policy",)),
            entry("u", "Unrelated text about gardening."),
        )
        assert doc_ids(await index.bm25("retention", 5)) == ["h"]

    async def test_k_limits_results_and_more_than_stored_is_fine(self, index) -> None:
        await put(index, *(entry(f"d{i}", f"shared word number {i}") for i in range(6)))
        assert len(await index.bm25("shared", 4)) == 4
        assert len(await index.bm25("shared", 100)) == 6
        if self.supports_knn:
            assert len(await index.knn(axis(0), 4)) == 4
            assert len(await index.knn(axis(0), 100)) == 6

    # ---- replacing and deleting ----------------------------------------------------------------

    async def test_upsert_replaces_every_old_chunk(self, index) -> None:
        await put(
            index,
            entry("doc", "old zebra text", "old yak text", "old walrus text",
                  vectors=[axis(0), axis(1), axis(2)]),
        )
        await put(index, entry("doc", "new giraffe text", vectors=[axis(3)], content_hash="v2"))

        for word in ("zebra", "yak", "walrus"):
            assert await index.bm25(word, 5) == []
        assert chunk_ids(await index.bm25("giraffe", 5)) == ["doc#0"]
        assert (await index.documents())["doc"].content_hash == "v2"
        [stats] = await index.source_stats()
        assert (stats.documents, stats.chunks) == (1, 1)
        if self.supports_knn:
            hits = await index.knn(axis(0), 10)
            assert chunk_ids(hits) == ["doc#0"]
            assert hits[0].text == "new giraffe text"

    async def test_delete_removes_document_and_chunks(self, index) -> None:
        await put(
            index,
            entry("gone", "ephemeral pelican", "second pelican chunk"),
            entry("kept", "durable pelican"),
        )
        async with index.transaction() as writer:
            await writer.delete("gone")
            await writer.delete("never-existed")  # not an error
        assert doc_ids(await index.bm25("pelican", 10)) == ["kept"]
        assert set(await index.documents()) == {"kept"}
        [stats] = await index.source_stats()
        assert (stats.documents, stats.chunks) == (1, 1)
        if self.supports_knn:
            assert doc_ids(await index.knn(axis(0), 10)) == ["kept"]

    async def test_upsert_and_delete_of_one_document_in_one_transaction(self, index) -> None:
        await put(index, entry("d", "original ocelot"))
        async with index.transaction() as writer:
            await writer.upsert(*entry("d", "revised ocelot", "extra ocelot"))
            await writer.delete("d")
            await writer.upsert(*entry("e", "fresh ocelot"))
        assert doc_ids(await index.bm25("ocelot", 10)) == ["e"]
        if self.supports_knn:
            assert doc_ids(await index.knn(axis(0), 10)) == ["e"]

    async def test_document_without_chunks_is_remembered(self, index) -> None:
        await put(index, entry("empty"))
        assert set(await index.documents()) == {"empty"}
        [stats] = await index.source_stats()
        assert (stats.documents, stats.chunks) == (1, 0)

    # ---- sources -------------------------------------------------------------------------------

    async def test_bm25_source_filter(self, index) -> None:
        await put(
            index,
            entry("w", "quarterly budget review", source="wiki"),
            entry("h", "quarterly budget review budget", source="handbook"),
            entry("s", "quarterly budget", source="slack"),
        )
        assert doc_ids(await index.bm25("budget", 10, ["wiki"])) == ["w"]
        assert set(doc_ids(await index.bm25("budget", 10, ["wiki", "slack"]))) == {"w", "s"}
        assert await index.bm25("budget", 10, ["nowhere"]) == []
        assert len(await index.bm25("budget", 10, None)) == 3
        # The filter applies before the top k: the best match overall is elsewhere.
        assert doc_ids(await index.bm25("budget", 1, ["slack"])) == ["s"]

    async def test_knn_source_filter(self, index) -> None:
        self.need_knn()
        await put(
            index,
            entry("w", "x", source="wiki", vectors=[axis(0)]),
            entry("h", "x", source="handbook", vectors=[unit(1, 0.1)]),
            entry("s", "x", source="slack", vectors=[axis(5)]),
        )
        assert doc_ids(await index.knn(axis(0), 1, ["slack"])) == ["s"]
        assert doc_ids(await index.knn(axis(0), 10, ["handbook", "slack"])) == ["h", "s"]
        assert await index.knn(axis(0), 10, ["nowhere"]) == []
        assert [h.source for h in await index.knn(axis(0), 10, ["wiki"])] == ["wiki"]

    async def test_similar_source_names_do_not_match_each_other(self, index) -> None:
        await put(
            index,
            entry("1", "tapir", source="wiki"),
            entry("2", "tapir", source="wiki-archive"),
            entry("3", "tapir", source="Wiki"),
        )
        assert doc_ids(await index.bm25("tapir", 10, ["wiki"])) == ["1"]
        if self.supports_knn:
            assert doc_ids(await index.knn(axis(0), 10, ["wiki-archive"])) == ["2"]

    async def test_documents_lists_hashes_per_source(self, index) -> None:
        await put(
            index,
            entry("a", "x", source="wiki", content_hash="ha", path="a.md"),
            entry("b", "y", source="wiki", content_hash="hb", url="https://b"),
            entry("c", "z", source="drive", content_hash="hc"),
        )
        assert await index.documents("wiki") == {
            "a": StoredDocument("a", "wiki", "ha", path="a.md"),
            "b": StoredDocument("b", "wiki", "hb", url="https://b"),
        }
        assert set(await index.documents()) == {"a", "b", "c"}
        assert await index.documents("nowhere") == {}

    async def test_source_stats_count_documents_and_chunks(self, index) -> None:
        before = time.time()
        await put(
            index,
            entry("a", "one", "two", source="wiki"),
            entry("b", "three", source="wiki"),
            entry("c", "four", "five", "six", source="drive"),
        )
        stats = {s.source: s for s in await index.source_stats()}
        assert set(stats) == {"wiki", "drive"}
        assert (stats["wiki"].documents, stats["wiki"].chunks) == (2, 3)
        assert (stats["drive"].documents, stats["drive"].chunks) == (1, 3)
        for s in stats.values():
            assert s.last_indexed is not None and before - 1 <= s.last_indexed <= time.time() + 1

    # ---- transactions --------------------------------------------------------------------------

    async def test_exception_in_transaction_rolls_everything_back(self, index) -> None:
        await put(index, entry("kept", "stable heron", content_hash="v1"))
        with pytest.raises(_Boom):
            async with index.transaction() as writer:
                await writer.upsert(*entry("new", "transient heron"))
                await writer.upsert(*entry("kept", "rewritten egret", content_hash="v2"))
                await writer.delete("kept")
                raise _Boom
        assert await index.documents() == {"kept": StoredDocument("kept", "wiki", "v1")}
        assert doc_ids(await index.bm25("heron", 10)) == ["kept"]
        assert await index.bm25("egret", 10) == []
        [stats] = await index.source_stats()
        assert (stats.documents, stats.chunks) == (1, 1)
        if self.supports_knn:
            assert doc_ids(await index.knn(axis(0), 10)) == ["kept"]
        # The index still takes writes after a rollback.
        await put(index, entry("after", "later heron"))
        assert set(doc_ids(await index.bm25("heron", 10))) == {"kept", "after"}

    async def test_readers_do_not_see_uncommitted_writes(self, index) -> None:
        if not self.isolated_reads:
            pytest.skip("this backend cannot show read isolation from inside the writer")
        await put(index, entry("old", "visible lynx", vectors=[axis(1)]))
        async with index.transaction() as writer:
            await writer.upsert(*entry("new", "hidden lynx", vectors=[axis(0)]))
            await writer.delete("old")
            assert doc_ids(await index.bm25("lynx", 10)) == ["old"]
            assert set(await index.documents()) == {"old"}
            if self.supports_knn:
                assert doc_ids(await index.knn(axis(0), 10)) == ["old"]
        assert doc_ids(await index.bm25("lynx", 10)) == ["new"]
        if self.supports_knn:
            assert doc_ids(await index.knn(axis(0), 10)) == ["new"]

    # ---- text handling -------------------------------------------------------------------------

    async def test_chinese_query_finds_the_chinese_passage(self, index) -> None:
        await put(
            index,
            entry("zh", "我们的服务器部署在东京数据中心。", title="部署说明"),
            entry("en", "Our servers are deployed in the Tokyo data centre.", title="Deployment"),
            entry("ja", "東京都の天気は晴れです。", title="天気"),
        )
        assert doc_ids(await index.bm25("服务器部署", 5)) == ["zh"]
        assert doc_ids(await index.bm25("数据中心在哪里", 5))[0] == "zh"
        assert doc_ids(await index.bm25("部署说明", 5)) == ["zh"]  # from the title
        assert doc_ids(await index.bm25("東京都", 5)) == ["ja"]
        assert doc_ids(await index.bm25("Tokyo servers", 5)) == ["en"]
        hit = (await index.bm25("服务器", 5))[0]
        assert hit.text == "我们的服务器部署在东京数据中心。"  # original text, not bigrams

    @pytest.mark.parametrize("query", WEIRD_QUERIES, ids=range(len(WEIRD_QUERIES)))
    async def test_odd_queries_never_raise(self, index, query: str) -> None:
        await put(index, entry("d", "Run the deploy script (carefully) AND check 'status'."))
        hits = await index.bm25(query, 5)
        assert isinstance(hits, list)
        assert all(h.doc_id == "d" for h in hits)

    async def test_empty_and_punctuation_queries_return_nothing(self, index) -> None:
        await put(index, entry("d", "Some text."))
        for query in ("", "   ", "?!", "***", "🚀🚀", "()"):
            assert await index.bm25(query, 5) == []

    async def test_syntax_words_are_searched_as_words(self, index) -> None:
        await put(
            index,
            entry("near", "Keep the NEAR cache warm."),
            entry("other", "Nothing relevant."),
        )
        assert doc_ids(await index.bm25("NEAR", 5)) == ["near"]
        assert doc_ids(await index.bm25("cache NOT", 5)) == ["near"]

    async def test_word_forms_match(self, index) -> None:
        await put(
            index,
            entry("d", "The service restarts itself after deploying a release."),
            entry("o", "Unrelated words entirely."),
        )
        assert doc_ids(await index.bm25("restarted deployments", 5)) == ["d"]
        assert doc_ids(await index.bm25("RELEASES", 5)) == ["d"]

    # ---- ranking sanity ------------------------------------------------------------------------

    async def test_ranking_prefers_the_relevant_document(self, index) -> None:
        await put(
            index,
            entry("vpn", "To connect to the VPN, install the client and sign in with SSO. "
                  "The VPN client reconnects automatically.", title="VPN setup"),
            entry("sso", "Single sign-on (SSO) works for every internal app."),
            entry("wifi", "The office wifi password is on the whiteboard."),
            entry("lunch", "Lunch is served at noon in the kitchen."),
        )
        hits = await index.bm25("how do I connect to the vpn?", 10)
        assert hits[0].doc_id == "vpn"
        assert "lunch" not in doc_ids(hits) and "wifi" not in doc_ids(hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)

    async def test_rare_terms_weigh_more_than_common_ones(self, index) -> None:
        # "report" is everywhere; "kerberos" is in one document only.
        await put(
            index,
            entry("rare", "Kerberos report."),
            *(entry(f"common{i}", f"Report report number {i}.") for i in range(6)),
        )
        assert (await index.bm25("kerberos report", 10))[0].doc_id == "rare"

    async def test_more_occurrences_rank_higher(self, index) -> None:
        await put(
            index,
            entry("many", "Backup the database. Backup nightly. Verify every backup."),
            entry("once", "Remember a backup of the files, then go home for the evening."),
            *(entry(f"filler{i}", f"Filler text {i}.") for i in range(4)),
        )
        assert doc_ids(await index.bm25("backup", 10)) == ["many", "once"]

    async def test_title_match_outranks_a_passing_mention(self, index) -> None:
        await put(
            index,
            entry("titled", "Steps are listed below.", title="Onboarding checklist"),
            entry("passing", "Lunch menus, parking and also the onboarding of interns."),
            *(entry(f"filler{i}", f"Filler text {i}.") for i in range(4)),
        )
        assert doc_ids(await index.bm25("onboarding", 10))[0] == "titled"

    async def test_stop_words_do_not_outvote_content_words(self, index) -> None:
        await put(
            index,
            entry("content", "Rotate the signing key every quarter."),
            entry("chatter", "What is the thing that is the best? It is what it is, the end."),
            *(entry(f"filler{i}", f"Filler text {i}.") for i in range(4)),
        )
        hits = await index.bm25("what is the signing key?", 10)
        assert hits[0].doc_id == "content"
