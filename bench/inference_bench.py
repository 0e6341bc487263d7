"""Inference backends side by side: torch fp32, ONNX Runtime fp32, ONNX Runtime int8.

One child process per backend (so each has its own peak RSS) holds that backend's embedder and
reranker, loaded once; the parent drives them round by round, backend after backend (the order
rotating each round), so load from other processes on the machine hits them alike. Per round
each child:

- embeds a fixed sample of SciFact chunks (``--chunks``, chunked as lorebot indexes them, the
  text the embedder sees) in the embedder's batches: chunks/s;
- embeds test queries one at a time: query embedding latency;
- reranks 30 candidates per query (the query's top 30 chunks of the sample by this backend's
  vectors) with lorebot's own reranker: an UNTRAINED segment-cosine model built from MiniLM cut
  to 3 layers (``lorebot finetune reranker``'s architecture; it ranks from the start, see
  search.rerank_model), at the reranker's default batch size.

Reported: medians over the rounds (throughput) and over all calls (latencies), each ONNX
backend's speed-up over torch, its vectors' cosine to torch's on the sample, peak RSS, and, when
``--eval BACKEND=FILE`` names `lorebot eval --json` results for a backend, SciFact nDCG@10 per
mode. Prints a table and writes bench/results/inference_bench.json.

    .venv/bin/python bench/inference_bench.py [--dataset DIR] [--chunks 1500] [--rounds 3] [--queries 40]
        [--eval torch=base.json --eval onnx-int8=int8.json ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, median, percentile, print_table, write_result  # noqa: E402

BACKENDS = ("torch", "onnx", "onnx-int8")
CANDIDATES = 30


def make_sample(work: Path, dataset: Path, n_chunks: int, n_queries: int) -> dict:
    """The chunk texts and queries every backend gets, written to ``work/sample.json``."""
    from search.chunking import Chunker, load_tokenizer
    from search.embedding import resolve_model_path
    from search.evaluation.datasets import beir_documents, load_beir

    data = load_beir(dataset, "test")
    chunker = Chunker(load_tokenizer(resolve_model_path("all-MiniLM-L6-v2")), 220, 32)
    texts: list[str] = []
    for doc in beir_documents(data, source="scifact"):
        texts.extend(c.embedding_text() for c in chunker.chunk(doc))
        if len(texts) >= n_chunks:
            break
    sample = {"chunks": texts[:n_chunks], "queries": list(data.queries.values())[:n_queries]}
    (work / "sample.json").write_text(json.dumps(sample))
    return sample


def build_reranker(dest: Path) -> Path:
    """lorebot's reranker architecture, untrained, from MiniLM (reused when already built)."""
    from search import rerank_model
    from search.embedding import resolve_model_path

    if not rerank_model.is_segment_reranker(dest):
        rerank_model.build(resolve_model_path("all-MiniLM-L6-v2"), layers=3).save(dest)
    return dest


def child(backend: str, work: Path, cache: Path, reranker_dir: Path) -> None:
    """Serve ``round`` and ``quit`` commands on stdin, one JSON line out per command."""
    import numpy as np

    from search.embedding import SentenceTransformerEmbedder
    from search.rerank import CrossEncoderReranker

    sample = json.loads((work / "sample.json").read_text())
    t0 = time.perf_counter()
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend=backend, cache_dir=cache)
    reranker = CrossEncoderReranker(str(reranker_dir), backend=backend, cache_dir=cache)
    embedder.warm_up()
    reranker.warm_up()
    load_s = time.perf_counter() - t0
    chunks, queries = sample["chunks"], sample["queries"]
    for line in sys.stdin:
        if line.strip() == "ping":
            print("{}", flush=True)
            continue
        if line.strip() == "quit":
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"peak_rss_mb": rss, "load_s": load_s,
                              "backend": [embedder.backend, reranker.backend]}), flush=True)
            return
        t = time.perf_counter()
        vectors = embedder.encode(chunks)
        index_s = time.perf_counter() - t
        np.save(work / f"vectors-{backend}.npy", vectors)
        query_ms, rerank_ms = [], []
        for q in queries:
            t = time.perf_counter()
            qv = embedder.encode([q])[0]
            query_ms.append((time.perf_counter() - t) * 1000)
            top = np.argsort(-(vectors @ qv))[:CANDIDATES]
            t = time.perf_counter()
            reranker.scores(q, [chunks[i] for i in top])
            rerank_ms.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"index_s": index_s, "query_ms": query_ms, "rerank_ms": rerank_ms}),
              flush=True)


def ndcg(path: Path) -> dict[str, float]:
    """nDCG@10 per mode from a `lorebot eval --json` file (nothing, if it is not written yet)."""
    if not path.is_file():
        print(f"no eval results in {path} (yet)", file=sys.stderr)
        return {}
    data = json.loads(path.read_text())
    modes = data.get("modes") or data.get("results") or data
    out = {}
    for mode, row in (modes.items() if isinstance(modes, dict) else []):
        if isinstance(row, dict):
            value = row.get("ndcg@10", row.get("nDCG@10", row.get("ndcg_at_10")))
            if value is not None:
                out[mode] = float(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", type=Path, default=SCIFACT, help="SciFact in BEIR layout")
    p.add_argument("--chunks", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--cache", type=Path, default=None,
                   help="ONNX export cache (default: a temporary directory; exports then count)")
    p.add_argument("--eval", action="append", default=[], metavar="BACKEND=FILE")
    p.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reranker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.work, args.cache, args.reranker)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = args.cache or work / "onnx"
        sample = make_sample(work, args.dataset, args.chunks, args.queries)
        reranker_dir = build_reranker(cache / "bench-reranker")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
               "HF_HUB_OFFLINE": "1"}
        procs = {}
        for b in BACKENDS:  # started one after the other: an export must not race a timing
            procs[b] = subprocess.Popen(
                [sys.executable, __file__, "--child", b, "--work", str(work), "--cache",
                 str(cache), "--reranker", str(reranker_dir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            ask(procs[b], "ping")  # answered once loaded (and exported, the first time)
        rounds: dict[str, list[dict]] = {b: [] for b in BACKENDS}
        for r in range(args.rounds):
            for b in BACKENDS[r % 3:] + BACKENDS[:r % 3]:
                rounds[b].append(ask(procs[b], "round"))
                print(f"round {r + 1} {b}: {len(sample['chunks']) / rounds[b][-1]['index_s']:.1f} "
                      "chunks/s", file=sys.stderr, flush=True)
        final = {b: ask(procs[b], "quit") for b in BACKENDS}
        for proc in procs.values():
            proc.wait()
        cosine = agreement(work)
    report(args, sample, rounds, final, cosine)


def ask(proc: subprocess.Popen, command: str) -> dict:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a benchmark child exited (code {proc.wait()}); see its stderr above")
    return json.loads(line)


def agreement(work: Path) -> dict[str, dict[str, float]]:
    """Each ONNX backend's chunk vectors against torch's: mean and minimum cosine."""
    import numpy as np

    ref = np.load(work / "vectors-torch.npy")
    out = {}
    for b in BACKENDS[1:]:
        cos = (np.load(work / f"vectors-{b}.npy") * ref).sum(1)
        out[b] = {"mean": float(cos.mean()), "min": float(cos.min())}
    return out


def report(args, sample, rounds, final, cosine) -> None:
    n = len(sample["chunks"])
    evals = {}
    for item in args.eval:
        backend, _, file = item.partition("=")
        evals[backend] = ndcg(Path(file)) | {"file": file}
    results = {}
    for b in BACKENDS:
        rate = median([n / r["index_s"] for r in rounds[b]])
        q = [x for r in rounds[b] for x in r["query_ms"]]
        rr = [x for r in rounds[b] for x in r["rerank_ms"]]
        results[b] = {"chunks_per_s": rate, "query_ms_p50": percentile(q, 50),
                      "rerank30_ms_p50": percentile(rr, 50), "rerank30_ms_p95": percentile(rr, 95),
                      "peak_rss_mb": final[b]["peak_rss_mb"], "load_s": final[b]["load_s"],
                      "ran_on": final[b]["backend"], "rounds_chunks_per_s":
                      [n / r["index_s"] for r in rounds[b]], "cosine_to_torch": cosine.get(b),
                      "ndcg@10": evals.get(b)}
    base = results["torch"]["chunks_per_s"]
    rows = []
    for b, r in results.items():
        nd = r["ndcg@10"] or {}
        rows.append((b, f"{r['chunks_per_s']:6.1f} chunks/s ({r['chunks_per_s'] / base:.2f}x)  "
                        f"query p50 {r['query_ms_p50']:5.1f} ms  rerank 30 p50 "
                        f"{r['rerank30_ms_p50']:6.1f} ms  RSS {r['peak_rss_mb']:5.0f} MB  nDCG@10 "
                        + " ".join(f"{m} {v:.4f}" for m, v in nd.items() if m != "file")))
    print_table(f"Inference backends: {n} SciFact chunks x {args.rounds} rounds, "
                f"{len(sample['queries'])} queries, {CANDIDATES} rerank candidates", rows)
    path = write_result("inference_bench", {
        "chunks": n, "rounds": args.rounds, "queries": len(sample["queries"]),
        "rerank_candidates": CANDIDATES, "reranker": "untrained segment-cosine, 3 MiniLM layers",
        "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
