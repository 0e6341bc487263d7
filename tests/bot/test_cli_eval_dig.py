"""Digging into an evaluation (issue 21): `lorebot eval --per-query FILE` writes one line per
query and mode whose figures are the ones the aggregate averages, and `lorebot search --dataset
DIR` searches the index `eval --dataset DIR` built.

Stand-in embedder (hashed vectors): seconds, and imperfect rankings, so averages mean something.
"""

from __future__ import annotations

import json
import statistics

import pytest

from bot.cli.main import main
from tests.bot.test_cli_newcomer import fake_models  # noqa: F401 - a fixture
from tests.support.tiny_beir import TOPICS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def graded(tiny_beir):
    """The tiny dataset with a second, more relevant document for three questions, so rankings
    miss sometimes and nDCG is not 1 everywhere."""
    with open(tiny_beir / "qrels" / "train.tsv", "a") as f:
        f.write("q-vpn\tlaptop\t2\nq-hotel\tflight\t2\nq-badge\tparking\t1\n")
    return tiny_beir


def test_per_query_lines_match_the_aggregate(capsys, data_dir, graded, fake_models, tmp_path):  # noqa: F811
    summary, lines = tmp_path / "eval.json", tmp_path / "per-query.jsonl"
    code, _out, err = run(capsys, "eval", "--dataset", str(graded), "--split", "train",
                          "--mode", "bm25,dense,hybrid", "--json", str(summary),
                          "--per-query", str(lines))
    assert code == 0, err
    aggregate = json.loads(summary.read_text())["results"]
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    assert len(records) == 8 * 3
    for mode in ("bm25", "dense", "hybrid"):
        mine = [r for r in records if r["mode"] == mode]
        assert sorted(r["qid"] for r in mine) == sorted(f"q-{d}" for d, _, _ in TOPICS)
        for metric in ("ndcg@10", "recall@100", "mrr@10", "hit@1", "hit@10"):
            assert statistics.fmean(r[metric] for r in mine) == pytest.approx(
                aggregate[mode][metric], abs=1e-12), (mode, metric)
    assert any(r["ndcg@10"] < 1 for r in records)  # the check above is not all ones
    for r in records:
        ranks = [rel["rank"] for rel in r["relevant"]]
        # The ranks say what the figures say: hit@1 iff a relevant document is first, and a
        # ranked relevant document sits at that place in the top ids.
        assert r["hit@1"] == (1.0 if 1 in ranks else 0.0)
        for rel in r["relevant"]:
            if rel["rank"] is not None and rel["rank"] <= len(r["top"]):
                assert r["top"][rel["rank"] - 1] == rel["id"]
            else:
                assert rel["id"] not in r["top"]
        assert r["query"] and len(r["top"]) <= 10
    vpn = next(r for r in records if r["qid"] == "q-vpn" and r["mode"] == "bm25")
    assert [(rel["id"], rel["grade"]) for rel in vpn["relevant"]] == [("laptop", 2), ("vpn", 1)]


def test_per_query_folder_is_checked_before_indexing(capsys, data_dir, tiny_beir, fake_models):  # noqa: F811
    code, _out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train",
                          "--per-query", "no/such/folder/q.jsonl")
    assert code == 2 and "--per-query no/such/folder/q.jsonl" in err and "does not exist" in err
    assert not (data_dir / "eval" / "tiny.sqlite3").exists()


def test_search_dataset_searches_the_eval_index(capsys, data_dir, tiny_beir, fake_models):  # noqa: F811
    code, _out, err = run(capsys, "search", "--dataset", str(tiny_beir), "hotel budget")
    assert code == 2 and "no index for the dataset" in err and "lorebot eval --dataset" in err
    code, _out, err = run(capsys, "eval", "--dataset", str(tiny_beir), "--split", "train",
                          "--mode", "bm25")
    assert code == 0, err
    code, out, err = run(capsys, "search", "--dataset", str(tiny_beir), "--mode", "bm25",
                         "--json", "hotel budget per night")
    assert code == 0, err
    hits = json.loads(out)["hits"]  # {"mode", "fusion", "hits"}: see search.fusion_weights
    assert hits[0]["doc_id"] == "hotel" and hits[0]["title"] == "Hotel budget"
    # The knowledge base itself is untouched and still empty.
    code, _out, err = run(capsys, "search", "hotel budget")
    assert code == 2 and "is empty" in err
    code, _out, err = run(capsys, "search", "--dataset", str(tiny_beir), "--source", "kb", "x")
    assert code == 2 and "do not go together" in err
