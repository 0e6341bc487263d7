"""SciFact parity between the embedded SQLite index and a real OpenSearch node, in one run.

The SQLite index that `lorebot eval --dataset` built for SciFact is copied into OpenSearch with
`lorebot opensearch migrate`'s code (same chunks, same vectors: no re-embedding, so the only
differences are the engines: FTS5 vs Lucene BM25, exact NumPy inner products vs HNSW). Then
the same retriever code (same embedder, same RRF) searches both, mode by mode, the backends
alternating per mode. Reports nDCG@10 (and the other metrics) per mode and backend, the
difference, search latency p50/p95, and how many queries rank differently. Prints a table and
writes bench/results/opensearch_parity.json.

    OPENSEARCH_URL=http://127.0.0.1:PORT OPENSEARCH_KNN_ENGINE=lucene \\
    LOREBOT_DATA_DIR=DIR .venv/bin/python bench/opensearch_parity.py [--dataset DIR] [--split test]

DIR is a data dir in which `lorebot eval --dataset DATASET` has run (it holds eval/NAME.sqlite3).
A node: `python3 deploy/opensearch-node/opensearch_node.py start` prints OPENSEARCH_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, peak_rss_mb, write_result  # noqa: E402

MODES = ("bm25", "dense", "hybrid")
TOLERANCE = 0.005  # issue 16: nDCG@10 within 0.005 of the SQLite backend


async def run(dataset: Path, split: str, url: str, engine: str, ef_search: int) -> dict:
    from bot.runtime.factories import new_retriever
    from bot.runtime.services import build_services
    from bot.settings import Settings
    from bot.training.evaluation import dataset_index
    from search.evaluation import evaluate, load_beir
    from search.index.opensearch import OpenSearchIndex
    from search.index.opensearch_mapping import IndexLayout
    from search.index.opensearch_migrate import migrate_sqlite

    settings = Settings()
    data = load_beir(dataset, split)
    sqlite_path, source = dataset_index(settings, dataset)
    if not sqlite_path.is_file():
        raise SystemExit(f"no {sqlite_path}: run `lorebot eval --dataset {dataset}` with this "
                         "LOREBOT_DATA_DIR first (it builds the SQLite index this bench copies)")
    # The SQLite side is exactly what `lorebot eval` searches (models from the settings/registry).
    services = build_services(settings, index_path=sqlite_path, with_llm=False)
    embedder = services.embedder
    embedder.warm_up()

    # A fresh alias of our own, one shard and no replica (one node), the engine the node has.
    prefix = f"parity-{uuid.uuid4().hex[:8]}"
    layout = IndexLayout(prefix=prefix, shards=1, replicas=0, knn_engine=engine,
                         hnsw_ef_search=ef_search)
    os_index = OpenSearchIndex(url, layout=layout, timeout_s=120)
    started = time.perf_counter()
    summary = await migrate_sqlite(sqlite_path, os_index)
    copy_s = time.perf_counter() - started
    print(f"copied {summary.documents} documents, {summary.chunks} chunks into {summary.index} "
          f"in {copy_s:.1f} s", file=sys.stderr)

    retrievers = {
        "sqlite": services.retriever,
        "opensearch": new_retriever(settings, os_index, embedder, None, default_mode="hybrid"),
    }
    sources = [source]
    for retriever in retrievers.values():  # warm: model, caches, the node's first queries
        for mode in MODES:
            for q in list(data.queries.values())[:5]:
                await retriever.search(q, mode=mode, k=200, sources=sources)

    results: dict[str, dict[str, dict[str, float]]] = {b: {} for b in retrievers}
    per_query: dict[str, dict[str, dict]] = {b: {} for b in retrievers}
    for mode in MODES:  # backends alternate per mode, so drifting load hits both alike
        for backend, retriever in retrievers.items():
            result = await evaluate(retriever, data.queries, data.qrels, [mode],
                                    dataset=data.name, split=split, sources=sources)
            results[backend][mode] = result.results[mode]
            per_query[backend][mode] = result.per_query[mode]
            print(f"{backend:>10} {mode:>6}: nDCG@10 {result.results[mode]['ndcg@10']:.4f}",
                  file=sys.stderr)

    rows = {}
    for mode in MODES:
        s, o = results["sqlite"][mode], results["opensearch"][mode]
        qs = per_query["sqlite"][mode]
        changed = sum(1 for q in qs
                      if abs(qs[q]["ndcg@10"] - per_query["opensearch"][mode][q]["ndcg@10"]) > 1e-9)
        rows[mode] = {
            "sqlite": s, "opensearch": o,
            "ndcg@10_diff": o["ndcg@10"] - s["ndcg@10"],
            "within_tolerance": abs(o["ndcg@10"] - s["ndcg@10"]) <= TOLERANCE,
            "queries_with_other_ndcg@10": changed,
        }
    await os_index.close()
    await services.close()
    return {
        "dataset": data.name, "split": split, "queries": len(data.queries),
        "documents": summary.documents, "chunks": summary.chunks, "copy_seconds": copy_s,
        "opensearch": {"url_host": url.split("//")[-1].split(":")[0], "knn_engine": engine,
                       "ef_search": ef_search, "shards": 1, "replicas": 0},
        "sqlite_knn": "exact inner products (NumPy, float32)",
        "opensearch_knn": f"HNSW ({engine} engine, ef_search {ef_search})",
        "tolerance": TOLERANCE, "modes": rows, "peak_rss_mb": peak_rss_mb(),
    }


def print_rows(result: dict) -> None:
    print(f"\nSciFact {result['split']} ({result['queries']} queries, {result['chunks']} chunks): "
          f"SQLite (exact k-NN) vs OpenSearch ({result['opensearch_knn']})")
    head = (f"{'mode':<7} {'nDCG@10 sqlite':>15} {'opensearch':>11} {'diff':>8} "
            f"{'R@100 s/o':>13} {'p50 ms s/o':>13} {'p95 ms s/o':>13} {'q differ':>9}")
    print(head + "\n" + "-" * len(head))
    for mode, row in result["modes"].items():
        s, o = row["sqlite"], row["opensearch"]
        print(f"{mode:<7} {s['ndcg@10']:>15.4f} {o['ndcg@10']:>11.4f} {row['ndcg@10_diff']:>+8.4f} "
              f"{s['recall@100']:>6.3f}/{o['recall@100']:<6.3f} "
              f"{s['latency_ms_p50']:>6.1f}/{o['latency_ms_p50']:<6.1f} "
              f"{s['latency_ms_p95']:>6.1f}/{o['latency_ms_p95']:<6.1f} "
              f"{row['queries_with_other_ndcg@10']:>9}")
    ok = all(r["within_tolerance"] for r in result["modes"].values())
    print(f"all modes within {result['tolerance']}: {'yes' if ok else 'NO'}; "
          f"copy {result['copy_seconds']:.1f} s; peak RSS {result['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="test")
    parser.add_argument("--ef-search", type=int, default=100, help="HNSW ef_search (default 100)")
    args = parser.parse_args()
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        raise SystemExit("set OPENSEARCH_URL (deploy/opensearch-node/opensearch_node.py start)")
    engine = os.environ.get("OPENSEARCH_KNN_ENGINE", "faiss")
    result = asyncio.run(run(args.dataset, args.split, url, engine, args.ef_search))
    print_rows(result)
    path = write_result("opensearch_parity", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
