"""Answer latency: from a question to the first streamed token, all figures from one run.

The sample docs are indexed into a temporary data dir; the answer pipeline streams answers from a
fake OpenAI-compatible server on a local port that replies at once, so the time measured is
lorebot's own (retrieval, reranking, prompt building, the HTTP round trip to the model), not an
LLM's. Variants run interleaved, question by question, so load from other processes on the machine
hits them alike:

- ``hybrid``: no reranking (BM25 + k-NN, reciprocal rank fusion);
- ``rerank``: hybrid, then the cross-encoder rescores the top ``search.rerank_depth`` hits, with
  every reranker setting at its default;
- ``rerank, batch 32``: the same with the reranker's former batch size of 32 (the "before");
- ``rerank, depth 30``: the defaults, but the top 30 fused hits rescored (the former default depth).

Unless ``--reranker DIR`` names one, the cross-encoder is built from the local MiniLM weights
with an UNTRAINED classification head (tests/support/tiny_reranker.py), cut to the layers
``lorebot finetune reranker`` keeps by default (LOREBOT_FINETUNE__RERANKER_LAYERS, 3 of 6): no
pretrained cross-encoder is available offline. Its scores are meaningless, so nothing here says
anything about ranking quality; its cost is real (the encoder of the size lorebot trains; lorebot's
own model pools and compares the query and passage tokens instead of classifying the first
token, a negligible difference; `--reranker DIR` measures a trained one).

A second table breaks the reranking cost down on the same questions' candidates: tokens actually
read versus padded, by batch size, by rerank depth, with passages capped at 128 tokens, and with
int8 weights (torch dynamic quantization, deprecated in torch; a what-if only), each with
wall-clock and CPU time (all threads of the process; it depends little on other load, which
wall-clock time on a shared machine does).

Reports p50/p95 of retrieval (embedding, BM25, k-NN, fusion), rerank, prompt (sources fitted
and counted), llm (request to first delta from the instant fake server), time to first token and
total. Prints tables and writes bench/results/answer_bench.json.

    .venv/bin/python bench/answer_bench.py [--questions N] [--sweep-questions N] [--docs DIR]
                                           [--reranker DIR] [--inference BACKEND]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, peak_rss_mb, print_table, write_result  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"

# Fifty questions the sample docs answer (a few in Chinese, as the docs have a Chinese page).
QUESTIONS = [
    "How do I add my own documents to lorebot?",
    "How do I choose which files get indexed?",
    "Which file formats can lorebot index?",
    "Can lorebot read scanned PDFs?",
    "What happens to files that cannot be read?",
    "What does exit code 1 mean after indexing?",
    "How do I exclude a drafts folder from indexing?",
    "Are hidden folders like .git indexed?",
    "What happens when I index the same folder again?",
    "Does re-indexing an unchanged folder re-embed everything?",
    "What happens to files that were deleted from the folder?",
    "What if I change the embedding model?",
    "What is the maximum file size lorebot indexes?",
    "How do I raise the file size limit?",
    "Can people search while an index run is in progress?",
    "What happens if indexing is interrupted?",
    "How do I name a knowledge source?",
    "Where does lorebot keep its data?",
    "How do I move the data directory?",
    "Where is the search index file stored?",
    "How do I start over with an empty index?",
    "How do I install lorebot?",
    "What do I need to run lorebot?",
    "How do I run the tests?",
    "Is anything downloaded at run time?",
    "Which embedding model does lorebot use by default?",
    "Does lorebot need a GPU?",
    "How long does indexing take on a laptop?",
    "Why does lorebot cite its sources?",
    "Why is my document not found?",
    "Which languages are supported?",
    "Does keyword search work for Chinese text?",
    "Does semantic search work well in languages other than English?",
    "How are settings configured?",
    "Where is every setting documented?",
    "How do I configure a reranker?",
    "How do I change the chunk size?",
    "How are keyword and semantic results combined?",
    "How do I connect a language model?",
    "What happens without a language model?",
    "Do my documents leave the machine?",
    "Are API keys written to the logs?",
    "What search modes are there?",
    "When should I use bm25 mode?",
    "What does the rerank mode do?",
    "How do I get machine-readable output?",
    "How do I search only one knowledge source?",
    "How do I list the indexed sources?",
    "如何修改数据目录的位置？",
    "如何添加文档？",
]

ANSWER = "Here is what the documentation says [1]. It also covers the details [2]."


@dataclass(frozen=True)
class Variant:
    """One pipeline configuration to time."""

    name: str
    rerank: bool
    batch_size: int | None = None  # None: the setting's value
    depth: int | None = None  # None: the setting's value


@dataclass
class Timing:
    """Timestamps (perf_counter seconds) and durations of one answer."""

    start: float = 0.0
    search_s: float = 0.0
    search_end: float = 0.0
    rerank_s: float = 0.0
    llm_start: float | None = None
    llm_first: float | None = None
    first_token: float | None = None
    end: float = 0.0
    mode: str = ""

    def row(self) -> dict[str, float | None]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else seconds * 1000

        llm = None if self.llm_first is None or self.llm_start is None else (
            self.llm_first - self.llm_start)
        prompt = None if self.llm_start is None else self.llm_start - self.search_end
        return {
            "retrieval": ms(self.search_s - self.rerank_s),
            "rerank": ms(self.rerank_s),
            "prompt": ms(prompt),
            "llm": ms(llm),
            "ttft": ms(None if self.first_token is None else self.first_token - self.start),
            "total": ms(self.end - self.start),
        }


@dataclass
class Probe:
    """Wraps the retriever, reranker and LLM of a pipeline to time each stage of an answer."""

    current: Timing = field(default_factory=Timing)

    def wrap_search(self, retriever) -> None:
        search = retriever.search

        async def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await search(*args, **kwargs)
            finally:
                self.current.search_end = time.perf_counter()
                self.current.search_s += self.current.search_end - t

        retriever.search = timed

    def wrap_rerank(self, reranker) -> None:
        rerank = reranker.rerank

        async def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await rerank(*args, **kwargs)
            finally:
                self.current.rerank_s += time.perf_counter() - t

        reranker.rerank = timed

    def wrap_llm(self, llm) -> None:
        stream = llm.stream

        async def timed(*args, **kwargs) -> AsyncGenerator[str, None]:
            self.current.llm_start = time.perf_counter()
            async for delta in stream(*args, **kwargs):
                if self.current.llm_first is None:
                    self.current.llm_first = time.perf_counter()
                yield delta

        llm.stream = timed


async def answer_once(pipeline, probe: Probe, question: str) -> Timing:
    timing = probe.current = Timing(start=time.perf_counter())
    async for part in pipeline.stream(question):
        if isinstance(part, str):
            if timing.first_token is None and part.strip():
                timing.first_token = time.perf_counter()
        else:
            timing.mode = part.mode
    timing.end = time.perf_counter()
    return timing


def summarise(rows: list[dict[str, float | None]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for stage in ("retrieval", "rerank", "prompt", "llm", "ttft", "total"):
        values = [r[stage] for r in rows if r[stage] is not None]
        if values:
            out[stage] = {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
                          "n": len(values)}
    return out


def padded_slots(lengths: Sequence[int], batch_size: int) -> int:
    """Token slots a forward pass computes: pairs sorted longest first, each batch padded."""
    ordered = sorted(lengths, reverse=True)
    return sum(len(ordered[i:i + batch_size]) * ordered[i]
               for i in range(0, len(ordered), batch_size))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from bot.answer.pipeline import AnswerPipeline
    from bot.cli.commands import index_paths
    from bot.settings import Settings
    from bot.runtime.factories import onnx_cache
    from bot.runtime.services import build_services
    from search.rerank import CrossEncoderReranker, hit_text
    from search.retriever import Retriever
    from tests.support.fake_openai import FakeOpenAI
    from tests.support.tiny_reranker import build_tiny_reranker

    load_before = os.getloadavg()
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.questions)]
    with tempfile.TemporaryDirectory() as tmp:
        # The architecture `lorebot finetune reranker` trains by default (its layer count).
        layers = Settings(_env_file=None).finetune.reranker_layers
        reranker_dir = args.reranker or build_tiny_reranker(Path(tmp) / "tiny-reranker",
                                                            layers=layers)
        async with FakeOpenAI(responder=lambda messages: ANSWER) as server:
            settings = Settings(
                _env_file=None, data_dir=Path(tmp) / "data",
                search={"reranker_model": str(reranker_dir), "inference": args.inference},
                llm={"model": "fake-model", "base_url": server.base_url, "api_key": "bench-key",
                     "max_retries": 0},
            )
            s = settings.search
            services = build_services(settings)
            summary = await index_paths(services, [args.docs], source="docs")
            await services.warm_up()

            variants = [
                Variant("hybrid", rerank=False),
                Variant("rerank", rerank=True),
                Variant("rerank, batch 32", rerank=True, batch_size=32),
                Variant("rerank, depth 30", rerank=True, depth=30),
            ]
            probe = Probe()
            probe.wrap_llm(services.llm)
            pipelines = {}
            rerankers: dict[str, CrossEncoderReranker] = {}
            for v in variants:
                reranker = None
                if v.rerank:
                    reranker = CrossEncoderReranker(
                        str(reranker_dir), device=s.device,
                        batch_size=v.batch_size or s.rerank_batch_size,
                        max_length=s.rerank_max_tokens, backend=s.inference,
                        cache_dir=onnx_cache(settings),
                    )
                    reranker.warm_up()
                    rerankers[v.name] = reranker
                    probe.wrap_rerank(reranker)
                retriever = Retriever(
                    services.index, services.embedder, reranker, candidates=s.candidates,
                    rrf_k=s.rrf_k, bm25_weight=s.bm25_weight, dense_weight=s.dense_weight,
                    rerank_depth=v.depth or s.rerank_depth,
                    default_mode="rerank" if v.rerank else "hybrid",
                )
                probe.wrap_search(retriever)
                pipelines[v.name] = AnswerPipeline(
                    retriever, services.llm, settings, count_tokens=services.count_tokens
                )

            # Warm-up answers (first HTTP connection, first calls of each path): not counted.
            for pipeline in pipelines.values():
                for question in QUESTIONS[:2]:
                    await answer_once(pipeline, probe, question)

            rows: dict[str, list[dict[str, float | None]]] = {v.name: [] for v in variants}
            modes: dict[str, dict[str, int]] = {v.name: {} for v in variants}
            for i, question in enumerate(questions):
                # Rotate the order, so no variant always runs right after another one.
                for v in variants[i % len(variants):] + variants[: i % len(variants)]:
                    timing = await answer_once(pipelines[v.name], probe, question)
                    rows[v.name].append(timing.row())
                    modes[v.name][timing.mode] = modes[v.name].get(timing.mode, 0) + 1
            requests = server.request_count

            # The breakdown times torch modules (padding, torch's int8): torch backend only.
            sweep_questions = args.sweep_questions if services.embedder.backend == "torch" else 0
            sweep = await rerank_sweep(
                services, rerankers["rerank"], questions[:sweep_questions], hit_text,
                depth=s.rerank_depth,
            )
            await services.llm.aclose()
            await services.close()

    return {
        "questions": len(questions),
        "documents": summary.added,
        "chunks": summary.chunks,
        "reranker": (str(args.reranker) if args.reranker else
                     f"MiniLM cross-encoder, {layers or 6} layers, UNTRAINED head"),
        "settings": {"inference": [services.embedder.backend, rerankers["rerank"].backend],
                     "rerank_depth": s.rerank_depth, "rerank_batch_size": s.rerank_batch_size,
                     "rerank_max_tokens": s.rerank_max_tokens, "top_k": s.top_k,
                     "candidates": s.candidates},
        "variants": {v.name: {"rerank": v.rerank, "batch_size": v.batch_size or (
            s.rerank_batch_size if v.rerank else None), "depth": (v.depth or s.rerank_depth)
            if v.rerank else None, "modes": modes[v.name], "latency": summarise(rows[v.name])}
            for v in variants},
        "rerank_sweep": sweep,
        "llm_requests": requests,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "peak_rss_mb": peak_rss_mb(),
    }


async def rerank_sweep(services, reranker, questions: Sequence[str], hit_text,
                       *, depth: int) -> dict[str, Any]:
    """Time the reranker alone on each question's fused candidates: by batch size, by depth,
    and two what-ifs that trade quality for speed (a 128-token cap; int8 weights)."""
    import torch

    from search.models_runtime import run_model
    from search.rerank import CrossEncoderReranker

    if not questions:
        return {}
    depths = sorted({5, 10, 15, 20, 30, depth})
    candidates = []
    for q in questions:  # enough hits for the deepest case, not just the default depth
        hits = await services.retriever.search(q, mode="hybrid", k=depths[-1])
        candidates.append((q, [hit_text(h) for h in hits]))
    from search.rerank import is_segment_model

    segment = is_segment_model(reranker.model)  # lorebot's own model (--reranker DIR)
    tokenizer = reranker.model.tokenizer
    limit = reranker.model.max_length if segment else reranker.model.max_seq_length
    lengths = [[len(ids) for ids in tokenizer([q] * len(texts), texts, truncation=True,
                                               max_length=limit)["input_ids"]]
               for q, texts in candidates]
    real = sum(sum(x) for x in lengths)
    default_batch = reranker.batch_size

    capped = CrossEncoderReranker(reranker.path, device=reranker.device,
                                  batch_size=default_batch, max_length=128)
    capped.warm_up()
    int8 = None if segment else _int8_copy(reranker.model)  # the what-if is for CrossEncoders

    def int8_scores(query: str, passages: Sequence[str]) -> list[float]:
        out = int8.predict([(query, p) for p in passages], batch_size=default_batch,
                           activation_fn=torch.nn.Sigmoid(), show_progress_bar=False)
        return [float(x) for x in out]

    def with_batch(batch_size: int):
        def scores(query: str, passages: Sequence[str]) -> list[float]:
            reranker.batch_size = batch_size
            try:
                return reranker.scores(query, passages)
            finally:
                reranker.batch_size = default_batch
        return scores

    # name -> (scoring function, depth, extra figures)
    cases: dict[str, tuple[Any, int, dict[str, float]]] = {}
    for b in sorted({1, 2, 4, 8, 16, 32, default_batch}):
        cases[f"batch {b}, depth {depth}"] = (with_batch(b), depth, {
            "padded_tokens_ratio": sum(padded_slots(x[:depth], b) for x in lengths)
            / sum(sum(x[:depth]) for x in lengths)})
    for d in depths:
        cases[f"depth {d}, batch {default_batch}"] = (reranker.scores, d, {
            "mean_tokens": sum(sum(x[:d]) for x in lengths) / len(lengths)})
    cases[f"max 128 tokens, depth {depth}"] = (capped.scores, depth, {})
    if int8 is not None:
        cases[f"int8 weights, depth {depth}"] = (int8_scores, depth, {})

    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for q, texts in candidates:  # every case on one question before the next: same load
        for name, (scores, top, _) in cases.items():
            t, c = time.perf_counter(), time.process_time()
            await run_model(scores, q, texts[:top])
            wall[name].append((time.perf_counter() - t) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    return {
        "questions": len(questions),
        "candidates_per_question": sum(len(t) for _, t in candidates) / len(candidates),
        "mean_pair_tokens": real / sum(len(x) for x in lengths),
        "max_pair_tokens": max(max(x) for x in lengths),
        "max_length": limit,
        "depth": depth,
        # p50 wall-clock, and p50 CPU time of the whole process (all torch threads): the CPU
        # figure depends little on other load, wall-clock time on a shared machine does.
        "cases": {name: {"p50_ms": percentile(wall[name], 50),
                         "cpu_p50_ms": percentile(cpu[name], 50), **extra}
                  for name, (_, _, extra) in cases.items()},
    }


def _int8_copy(model):
    """A copy with int8 dynamic quantization of the Linear layers, or None if torch lacks it.

    Only a what-if: torch.ao.quantization is deprecated, and the effect on a trained reranker's
    ranking quality is not measured here.
    """
    import copy
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            copied = copy.deepcopy(model)
            quantize_dynamic(copied, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            return copied
    except (ImportError, RuntimeError, AttributeError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--sweep-questions", type=int, default=10,
                        help="questions for the reranking breakdown (0: skip it)")
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--reranker", type=Path,
                        help="a CrossEncoder directory (default: build the untrained MiniLM one)")
    parser.add_argument("--inference", choices=("torch", "onnx", "onnx-int8"), default="torch",
                        help="LOREBOT_SEARCH__INFERENCE for the embedder and reranker (ONNX: "
                        "lorebot's own reranker only, e.g. --reranker from `lorebot finetune`); "
                        "results go to answer_bench_<inference>.json unless torch")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    r = asyncio.run(run(args))

    rows = []
    for name, v in r["variants"].items():
        lat = v["latency"]
        detail = f"batch {v['batch_size']}, depth {v['depth']}" if v["rerank"] else "no reranker"
        rows.append((f"{name}  ({detail})", "modes " + ", ".join(
            f"{m} {n}" for m, n in sorted(v["modes"].items()))))
        for stage in ("retrieval", "rerank", "prompt", "llm", "ttft", "total"):
            if stage in lat:
                rows.append((f"  {stage} p50 / p95",
                             f"{lat[stage]['p50_ms']:7.1f} / {lat[stage]['p95_ms']:7.1f} ms"))
    rows.append(("peak memory (RSS)", f"{r['peak_rss_mb']:.0f} MB"))
    rows.append(("torch threads / load average before, after",
                 f"{r['torch_threads']} / {r['load_average_before'][0]:.2f}, "
                 f"{r['load_average_after'][0]:.2f}"))
    print_table(
        f"lorebot answer latency ({r['questions']} questions, {r['documents']} docs, "
        f"{r['chunks']} chunks; reranker {r['reranker']}: cost only, no quality)", rows)

    sweep = r["rerank_sweep"]
    if sweep:
        rows = [("pair tokens mean / max (model cap)",
                 f"{sweep['mean_pair_tokens']:.0f} / {sweep['max_pair_tokens']} "
                 f"({sweep['max_length']})")]
        for name, x in sweep["cases"].items():
            extra = ""
            if "padded_tokens_ratio" in x:
                extra = f"padded/real tokens {x['padded_tokens_ratio']:.2f}"
            elif "mean_tokens" in x:
                extra = f"{x['mean_tokens']:.0f} tokens/question"
            rows.append((name, f"{x['p50_ms']:7.1f} ms  (cpu {x['cpu_p50_ms']:7.1f} ms)  {extra}"))
        print_table(f"reranking alone, p50 over {sweep['questions']} questions' candidates "
                    "(wall-clock; cpu = all threads)", rows)
    name = "answer_bench" if args.inference == "torch" else f"answer_bench_{args.inference}"
    print(f"\nwrote {write_result(name, r)}")


if __name__ == "__main__":
    main()
