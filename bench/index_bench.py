"""Indexing and search benchmark on SciFact, all figures from one run.

Reports: raw model encode throughput, end-to-end indexing throughput and its overhead over pure
embedding, re-index time of the unchanged corpus, search latency p50/p95 per mode over the test
queries, and peak memory. Prints a table and writes bench/results/index_bench.json.

    .venv/bin/python bench/index_bench.py [--dataset DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, median, peak_rss_mb, percentile, print_table, write_result  # noqa: E402


async def run(dataset: Path, limit: int | None) -> dict:
    from bot.settings import Settings
    from bot.runtime.services import build_services
    from search.evaluation.datasets import beir_documents, load_beir

    data = load_beir(dataset, "test")
    documents = list(beir_documents(data, source="scifact"))[: limit or None]
    queries = list(data.queries.values())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp))
        services = build_services(settings, with_llm=False)
        embedder = services.embedder
        embedder.warm_up()  # model load is start-up cost, not indexing cost

        t0 = time.perf_counter()
        first = await services.indexer.index_documents("scifact", documents, total=len(documents))
        index_s = time.perf_counter() - t0

        # Pure embedding of exactly the texts the indexer embedded, same batch size.
        chunker = services.indexer.chunker
        texts = [c.embedding_text() for d in documents for c in chunker.chunk(d)]
        t0 = time.perf_counter()
        embedder.encode(texts)
        encode_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        second = await services.indexer.index_documents("scifact", documents, total=len(documents))
        reindex_s = time.perf_counter() - t0

        latency: dict[str, dict[str, float]] = {}
        modes = ["bm25", "dense", "hybrid"] + (["rerank"] if services.reranker else [])
        for mode in modes:
            await services.retriever.search(queries[0], mode=mode, k=10)  # warm caches
            times = []
            for q in queries:
                t = time.perf_counter()
                await services.retriever.search(q, mode=mode, k=10)
                times.append((time.perf_counter() - t) * 1000)
            latency[mode] = {"p50_ms": median(times), "p95_ms": percentile(times, 95)}
        await services.close()

    return {
        "documents": len(documents),
        "chunks": first.chunks,
        "encode_seconds": encode_s,
        "encode_chunks_per_s": len(texts) / encode_s,
        "index_seconds": index_s,
        "index_chunks_per_s": first.chunks / index_s,
        "index_overhead_vs_encode": index_s / encode_s - 1,
        "reindex_unchanged_seconds": reindex_s,
        "reindex_fraction_of_first": reindex_s / index_s,
        "reindex_reembedded_chunks": second.chunks,
        "search_latency": latency,
        "queries": len(queries),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=SCIFACT)
    parser.add_argument("--limit", type=int, help="index only the first N documents")
    args = parser.parse_args()
    r = asyncio.run(run(args.dataset, args.limit))
    rows = [
        ("documents / chunks", f"{r['documents']} / {r['chunks']}"),
        ("raw encode", f"{r['encode_chunks_per_s']:.1f} chunks/s ({r['encode_seconds']:.1f} s)"),
        ("end-to-end indexing", f"{r['index_chunks_per_s']:.1f} chunks/s ({r['index_seconds']:.1f} s)"),
        ("indexing overhead over encode", f"{100 * r['index_overhead_vs_encode']:+.1f} %"),
        ("re-index unchanged", f"{r['reindex_unchanged_seconds']:.2f} s "
         f"({100 * r['reindex_fraction_of_first']:.2f} % of first; "
         f"{r['reindex_reembedded_chunks']} chunks re-embedded)"),
    ]
    for mode, lat in r["search_latency"].items():
        rows.append((f"search {mode} p50 / p95", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} ms"))
    rows.append(("peak memory (RSS)", f"{r['peak_rss_mb']:.0f} MB"))
    print_table(f"lorebot indexing benchmark ({args.dataset.name}, {r['queries']} queries)", rows)
    print(f"\nwrote {write_result('index_bench', r)}")


if __name__ == "__main__":
    main()
