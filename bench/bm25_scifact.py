"""A quick check of the embedded index's BM25 quality and latency on SciFact (BEIR layout).

Indexes ``corpus.jsonl`` one chunk per document (title as title, text as text) into a temporary
SqliteIndex, runs the test queries through ``bm25(k=100)`` and reports nDCG@10 with ranx, next
to the published BM25 numbers (0.665 BEIR/Elasticsearch, 0.679 Anserini). Also times bm25 and
knn (exact, NumPy) per query. Vectors are random unit vectors: knn quality means nothing here,
only its latency; ``--dim 384`` times it at MiniLM's size.

    .venv/bin/python bench/bm25_scifact.py [--data ../shared/datasets/scifact] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.index.sqlite import SqliteIndex  # noqa: E402
from search.models import Chunk, Document  # noqa: E402
from search.text import content_hash  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def load_beir(data: Path) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = {
        q["_id"]: q["text"]
        for q in map(json.loads, (data / "queries.jsonl").open(encoding="utf-8"))
    }
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        next(f)  # header: query-id corpus-id score
        for line in f:
            qid, did, score = line.split()
            qrels.setdefault(qid, {})[did] = int(score)
    return corpus, queries, qrels


async def build(index: SqliteIndex, corpus: list[dict], dim: int, batch: int = 1000) -> float:
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, len(corpus), batch):
        async with index.transaction() as writer:
            for row in corpus[start : start + batch]:
                doc = Document(
                    doc_id=row["_id"],
                    source="scifact",
                    title=row.get("title", ""),
                    text=row["text"],
                    content_hash=content_hash(row.get("title", ""), row["text"]),
                )
                chunk = Chunk(f"{doc.doc_id}#0", doc.doc_id, 0, doc.text, doc.title)
                vector = rng.standard_normal((1, dim)).astype(np.float32)
                vector /= np.linalg.norm(vector)
                await writer.upsert(doc, [chunk], vector)
    return time.perf_counter() - started


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    return float(np.percentile(samples, 95)) * 1000


async def run(args: argparse.Namespace) -> dict:
    from ranx import Qrels, Run, evaluate

    corpus, queries, qrels = load_beir(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        index = SqliteIndex(
            Path(tmp) / "scifact.sqlite3",
            title_weight=args.title_weight,
            headings_weight=1.5,
            text_weight=args.text_weight,
        )
        async with index:
            build_s = await build(index, corpus, args.dim)
            run: dict[str, dict[str, float]] = {}
            bm25_times: list[float] = []
            for qid in qrels:
                started = time.perf_counter()
                hits = await index.bm25(queries[qid], 100)
                bm25_times.append(time.perf_counter() - started)
                run[qid] = {h.doc_id: h.score for h in hits} or {"__none__": 0.0}
            rng = np.random.default_rng(1)
            knn_times: list[float] = []
            for _ in qrels:
                q = rng.standard_normal(args.dim).astype(np.float32)
                q /= np.linalg.norm(q)
                started = time.perf_counter()
                await index.knn(q, 100)
                knn_times.append(time.perf_counter() - started)
    scores = evaluate(Qrels(qrels), Run(run), ["ndcg@10", "recall@100"])
    return {
        "dataset": "scifact",
        "documents": len(corpus),
        "queries": len(qrels),
        "title_weight": args.title_weight,
        "text_weight": args.text_weight,
        "dim": args.dim,
        "ndcg@10": round(float(scores["ndcg@10"]), 4),
        "recall@100": round(float(scores["recall@100"]), 4),
        "build_s": round(build_s, 2),
        "bm25_p50_ms": round(p50_ms(bm25_times), 2),
        "bm25_p95_ms": round(p95_ms(bm25_times), 2),
        "knn_p50_ms": round(p50_ms(knn_times), 2),
        "knn_p95_ms": round(p95_ms(knn_times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder")
    parser.add_argument("--dim", type=int, default=8, help="dimension of the dummy vectors")
    parser.add_argument("--title-weight", type=float, default=2.0)
    parser.add_argument("--text-weight", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    target = 0.66
    verdict = "OK" if result["ndcg@10"] >= target else "BELOW TARGET"
    print(f"{'target':<{width}}  nDCG@10 >= {target} (published BM25 0.665-0.679): {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
