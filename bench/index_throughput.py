"""Indexing end to end per inference backend: `lorebot index` on the same files, as a user runs it.

The first ``--docs`` SciFact abstracts are written as Markdown files (title as heading, then the
abstract); each run is a fresh ``lorebot index`` process with its own empty data dir and
``LOREBOT_SEARCH__INFERENCE`` set to one backend, so it loads its models, reads, chunks, embeds
and commits like a first index of a knowledge base. The ONNX exports are made once before the
timed rounds, in a cache every run shares (``LOREBOT_SEARCH__ONNX_CACHE``): exporting is a
one-time cost per model, reported apart. Backends alternate within a round, the order rotating
each round, so load from other processes hits them alike.

Reported per backend (medians over the rounds): chunks/s over the whole command (process start
to exit: imports and model load included), chunks/s over the index run alone (the summary's own
seconds), each as a ratio to torch, and the command's peak RSS. Prints a table and writes
bench/results/index_throughput.json.

    .venv/bin/python bench/index_throughput.py [--docs 400] [--rounds 3] [--backends torch,onnx,onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, median, print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(folder: Path, dataset: Path, n_docs: int) -> int:
    """The first ``n_docs`` documents of ``dataset``'s corpus.jsonl as Markdown files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            text = f"# {doc.get('title') or doc['_id']}\n\n{doc['text']}\n"
            (folder / f"{doc['_id']}.md").write_text(text, encoding="utf-8")
            written += 1
            if written >= n_docs:
                break
    return written


def index_once(corpus: Path, backend: str, cache: Path) -> dict:
    """One ``lorebot index --json`` in a fresh data dir; its summary, wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix=f"lorebot-ix-{backend}-") as data_dir:
        env = {**os.environ, "LOREBOT_DATA_DIR": data_dir, "LOREBOT_SEARCH__INFERENCE": backend,
               "LOREBOT_SEARCH__ONNX_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
               "LOREBOT_FINETUNE__USE_REGISTRY": "false"}
        start = time.perf_counter()
        # GNU time reports the command's own peak RSS (its last stderr line)
        done = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb %M", sys.executable, "-m",
                               "bot.cli", "index", str(corpus), "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"lorebot index on {backend} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        rss_kb = int(done.stderr.strip().splitlines()[-1].split()[-1])
        return {"chunks": summary["chunks"], "index_s": summary["seconds"], "wall_s": wall,
                "peak_rss_mb": rss_kb / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=SCIFACT, help="a BEIR dataset directory")
    p.add_argument("--docs", type=int, default=400, help="documents to index per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backends", default="torch,onnx,onnx-int8")
    p.add_argument("--cache", type=Path, help="ONNX export cache (default: a temporary one)")
    args = p.parse_args()
    backends = args.backends.split(",")

    with tempfile.TemporaryDirectory(prefix="lorebot-ix-") as work:
        work = Path(work)
        corpus = work / "scifact-md"
        n_docs = write_corpus(corpus, args.dataset, args.docs)
        cache = args.cache or work / "onnx-cache"
        export_s = {}
        for backend in backends:  # warm-up: exports (one-time), page cache, imports
            started = time.perf_counter()
            index_once(corpus, backend, cache)
            export_s[backend] = round(time.perf_counter() - started, 1)
            print(f"warm-up {backend}: {export_s[backend]} s (exports included)", flush=True)
        runs: dict[str, list[dict]] = {b: [] for b in backends}
        for r in range(args.rounds):
            order = backends[r % len(backends):] + backends[:r % len(backends)]
            for backend in order:
                run = index_once(corpus, backend, cache)
                runs[backend].append(run)
                print(f"round {r + 1} {backend}: {run['chunks']} chunks, index {run['index_s']:.1f} s, "
                      f"command {run['wall_s']:.1f} s", flush=True)

    results = {}
    for backend, rs in runs.items():
        results[backend] = {
            "chunks": rs[0]["chunks"],
            "command_chunks_per_s": median([x["chunks"] / x["wall_s"] for x in rs]),
            "index_chunks_per_s": median([x["chunks"] / x["index_s"] for x in rs]),
            "command_s": [round(x["wall_s"], 2) for x in rs],
            "index_s": [round(x["index_s"], 2) for x in rs],
            "peak_rss_mb": round(max(x["peak_rss_mb"] for x in rs)),
            "warm_up_s": export_s[backend],
        }
    base = results.get("torch")
    rows = []
    for backend, r in results.items():
        if base:
            r["command_speedup"] = r["command_chunks_per_s"] / base["command_chunks_per_s"]
            r["index_speedup"] = r["index_chunks_per_s"] / base["index_chunks_per_s"]
        speed = (f"  ({r['command_speedup']:.2f}x / {r['index_speedup']:.2f}x)" if base else "")
        rows.append((backend, f"{r['command_chunks_per_s']:5.1f} chunks/s command, "
                              f"{r['index_chunks_per_s']:5.1f} chunks/s index run{speed}, "
                              f"RSS {r['peak_rss_mb']} MB"))
    print_table(f"lorebot index, {n_docs} SciFact abstracts ({results[backends[0]]['chunks']} chunks), "
                f"{args.rounds} rounds, medians (x torch: command / index run)", rows)
    path = write_result("index_throughput", {"docs": n_docs, "rounds": args.rounds,
                                             "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
