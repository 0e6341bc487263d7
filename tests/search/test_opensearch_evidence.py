"""The evidence threshold gives the same verdicts on both backends (issue 16).

The answer pipeline decides "the knowledge base does not cover this" from ``Hit.similarity``, the
cosine similarity of query and chunk (``bot.answer.pipeline._is_evidence``). SQLite computes it
exactly; OpenSearch returns a k-NN *score* that ``similarity_from_score`` must turn back into the
inner product. If that conversion were off (lucene's old dot-product score ``(1 + ip) / 2``, or
the negative branch ``1 / (1 - ip)`` inverted wrongly), every similarity would shift and an
off-topic question could clear the threshold on OpenSearch only. So, on a real node:

* vectors with chosen inner products (positive, zero, negative) come back with exactly those
  similarities, with and without a source filter (a filter can take Lucene's exact-search path);
* the ``kb`` fixture (lorebot's docs, as ``tests/bot/test_cli_llm.py`` indexes it), indexed into
  both backends through the CLI with the real MiniLM model, gives the same dense similarities and
  the same answer mode for the suite's off-topic questions and for on-topic ones.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import numpy as np
import pytest

from bot.settings import AnswerSettings, Settings
from tests.search.index_contract import entry, put
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures
from tests.support.opensearch_fixtures import knn_engine_for_tests

pytestmark = pytest.mark.opensearch

# The suite's no-evidence question on real similarities (test_cli_llm's OFF_TOPIC_QUESTION) and
# more of its kind, then questions the docs do answer: both verdicts must occur, or the
# comparison would tell nothing. (test_answer's "office wifi password" is asked of fake hits;
# on lorebot's docs the real model finds 0.32 for it, evidence on both backends.)
OFF_TOPIC = [
    "What are the migration patterns of arctic terns?",
    "Which fertiliser is best for tomato plants?",
    "How long should I bake sourdough bread?",
    "Who won the football world cup in 1998?",
]
ON_TOPIC = [
    "How do I choose which files get indexed?",
    "Is economy class required for short flights?",
    "When do new engineers get a hardware security key?",
    "How do I connect lorebot to Slack?",
]


# ---- the score conversion on a real node -------------------------------------------------------

def _with_inner_product(query: np.ndarray, ip: float, rng) -> np.ndarray:
    """A unit vector whose inner product with the unit ``query`` is exactly ``ip``."""
    other = rng.standard_normal(query.shape)
    other -= (other @ query) * query
    other /= np.linalg.norm(other)
    return ip * query + np.sqrt(1 - ip * ip) * other


@pytest.mark.parametrize("sources", [None, ["wiki"]])
async def test_knn_similarities_are_the_inner_products(real_cluster_url, open_test_index,
                                                       sources):
    rng = np.random.default_rng(16)
    query = rng.standard_normal(32)
    query /= np.linalg.norm(query)
    wanted = {"p90": 0.9, "p40": 0.4, "p10": 0.1, "z": 0.0, "n30": -0.3, "n80": -0.8}
    index = await open_test_index(real_cluster_url)
    await put(index, *(entry(name, f"text {name}", vectors=[_with_inner_product(query, ip, rng)])
                       for name, ip in wanted.items()))
    hits = await index.knn(query, len(wanted), sources)
    got = {h.doc_id: h.similarity for h in hits}
    assert got == pytest.approx(wanted, abs=1e-5)
    # The score the retriever ranks by is the similarity too, best first.
    assert [h.score for h in hits] == [h.similarity for h in hits]
    assert [h.doc_id for h in hits] == sorted(wanted, key=wanted.get, reverse=True)


# ---- the same verdicts on the same corpus, through the CLI and the real model -------------------

def _delete_prefix(url: str, prefix: str) -> None:
    """Drop the test's physical indexes (by name: wildcard deletes may be refused) and template."""
    try:
        with urllib.request.urlopen(f"{url}/{prefix}-v*/_alias", timeout=30) as r:
            names = sorted(json.load(r))
        for path in ([",".join(names)] if names else []) + [f"_index_template/{prefix}"]:
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/{path}", method="DELETE"), timeout=30).close()
    except OSError:  # best effort: nothing may have been created
        pass


@pytest.fixture
def both_backends(real_cluster_url, data_dir, kb, monkeypatch, capsys):
    """The ``kb`` fixture indexed through the CLI into SQLite and into a fresh OpenSearch prefix;
    yields the environment switching the CLI to OpenSearch."""
    from bot.cli.main import main

    prefix = f"lorebot-test-{uuid.uuid4().hex[:10]}"
    opensearch_env = {
        "LOREBOT_SEARCH__BACKEND": "opensearch",
        "LOREBOT_OPENSEARCH__URL": real_cluster_url,
        "LOREBOT_OPENSEARCH__INDEX_PREFIX": prefix,
        "LOREBOT_OPENSEARCH__REPLICAS": "0",
        "LOREBOT_OPENSEARCH__KNN_ENGINE": knn_engine_for_tests(),
    }
    for name in opensearch_env:
        monkeypatch.delenv(name, raising=False)
    assert main(["index", str(kb), "--source", "handbook", "--json"]) == 0
    sqlite_chunks = json.loads(capsys.readouterr().out)["chunks"]
    try:
        with monkeypatch.context() as mp:
            for name, value in opensearch_env.items():
                mp.setenv(name, value)
            assert main(["index", str(kb), "--source", "handbook", "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["chunks"] == sqlite_chunks > 0
        yield opensearch_env
    finally:
        _delete_prefix(real_cluster_url, prefix)


async def _verdicts(questions: list[str]) -> dict[str, tuple[str, list[tuple[str, float]]]]:
    """Per question: the answer mode and the dense hits (chunk, similarity), from settings."""
    from bot.runtime.services import build_services

    out = {}
    async with build_services(Settings(), with_llm=False) as services:
        for question in questions:
            answer = await services.pipeline.answer(question)
            dense = await services.retriever.search(question, mode="dense", k=5)
            out[question] = (answer.mode, [(h.chunk_id, h.similarity) for h in dense])
    return out


@pytest.mark.slow
async def test_the_no_evidence_questions_get_the_same_verdict_on_both_backends(
    both_backends, monkeypatch
):
    questions = OFF_TOPIC + ON_TOPIC
    embedded = await _verdicts(questions)
    with monkeypatch.context() as mp:
        for name, value in both_backends.items():
            mp.setenv(name, value)
        production = await _verdicts(questions)

    threshold = AnswerSettings().min_similarity
    for question in questions:
        (mode_a, dense_a), (mode_b, dense_b) = embedded[question], production[question]
        # The same chunks at the same similarities (HNSW on a few dozen chunks is exact).
        assert [c for c, _ in dense_b] == [c for c, _ in dense_a], question
        assert [s for _, s in dense_b] == pytest.approx([s for _, s in dense_a], abs=1e-4)
        assert mode_b == mode_a, (question, dense_a[:1], dense_b[:1], threshold)
    # The threshold was really exercised both ways, by the real model's similarities.
    best = {q: round(embedded[q][1][0][1], 3) for q in questions}
    assert {embedded[q][0] for q in OFF_TOPIC} == {"no_evidence"}, best
    assert {embedded[q][0] for q in ON_TOPIC} == {"extractive"}, best
