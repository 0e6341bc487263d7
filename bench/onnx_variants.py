"""What else ONNX Runtime offers for MiniLM on this CPU: speed and fidelity of each variant.

lorebot ships two ONNX variants (search.onnx_backend): the fp32 export and its dynamic int8 copy
(signed per-channel weights, 7-bit range). This bench measures the other ways ONNX Runtime's own
tools can make the embedder faster, to show where the ceiling is on the machine it runs on:

- ``fp32 fused``: the fp32 export through onnxruntime.transformers' BERT optimizer (fused
  attention, skip-layer-norm, bias-GELU);
- ``int8 fused``: that graph, then lorebot's dynamic int8 quantization;
- ``int8 per-tensor`` and ``uint8 weights``: dynamic int8 with one scale per tensor, and with
  unsigned weights at full range (optimum's AVX2 preset);
- ``int8, fp32 first+last FFN``: lorebot's int8 with the feed-forward output projection of the
  first and last layer left in fp32 (where int8 costs most fidelity);
- ``int8 static``: static QDQ quantization, activations calibrated (min-max) on 128 SciFact train
  chunks;
- ``4-bit blocks`` and ``8-bit blocks``: weight-only MatMulNBits (block 32, int8 compute), when
  onnx_ir is installed.

Each variant embeds the same SciFact test chunks (``--chunks``) in batches of 32, longest first;
rounds interleave the variants (order rotating), throughput is the median over rounds, and each
variant's vectors are compared with torch's (cosine mean and minimum). One process, 2 threads per
session. Prints a table and writes bench/results/onnx_variants.json.

    .venv/bin/python bench/onnx_variants.py [--chunks 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SCIFACT, median, print_table, write_result  # noqa: E402


def sample_chunks(dataset: Path, split: str, n: int, skip_docs: int = 0) -> list[str]:
    from search.chunking import Chunker, load_tokenizer
    from search.embedding import resolve_model_path
    from search.evaluation.datasets import beir_documents, load_beir

    chunker = Chunker(load_tokenizer(resolve_model_path("all-MiniLM-L6-v2")), 220, 32)
    texts: list[str] = []
    for i, doc in enumerate(beir_documents(load_beir(dataset, split), source="scifact")):
        if i < skip_docs:
            continue
        texts.extend(c.embedding_text() for c in chunker.chunk(doc))
        if len(texts) >= n:
            break
    return texts[:n]


def build_variants(fp32: Path, out: Path, calibration: list[str], tokenizer) -> dict[str, Path | str]:
    """Each variant's ONNX file, or why it could not be built."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.transformers.optimizer import optimize_model

    from search.onnx_backend import quantize_int8

    files: dict[str, Path | str] = {"fp32 (lorebot onnx)": fp32}
    int8 = out / "int8.onnx"
    quantize_int8(fp32, int8)
    files["int8 (lorebot onnx-int8)"] = int8
    fused = out / "fused.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384,
                   opt_level=1).save_model_to_file(str(fused))
    files["fp32 fused"] = fused
    # the fused graph has contrib operators shape inference cannot type: name the default
    float_default = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    common = dict(op_types_to_quantize=["MatMul", "Gemm"])
    quantize_dynamic(str(fused), str(out / "int8-fused.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, reduce_range=True, extra_options=float_default, **common)
    files["int8 fused"] = out / "int8-fused.onnx"
    quantize_dynamic(str(fp32), str(out / "int8-pt.onnx"), weight_type=QuantType.QInt8,
                     per_channel=False, reduce_range=True, **common)
    files["int8 per-tensor"] = out / "int8-pt.onnx"
    quantize_dynamic(str(fp32), str(out / "u8.onnx"), weight_type=QuantType.QUInt8,
                     per_channel=False, reduce_range=False, **common)
    files["uint8 weights"] = out / "u8.onnx"
    names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
    last = max(int(n.split("layer.")[1].split("/")[0]) for n in names if "layer." in n)
    keep = [n for n in names if n.endswith("/output/dense/MatMul") and "attention" not in n
            and ("layer.0/" in n or f"layer.{last}/" in n)]
    quantize_dynamic(str(fp32), str(out / "int8-keep.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, reduce_range=True, nodes_to_exclude=keep, **common)
    files["int8, fp32 first+last FFN"] = out / "int8-keep.onnx"

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([tokenizer(calibration[i:i + 16], truncation=True, max_length=256,
                                           padding=True, return_tensors="np")
                                 for i in range(0, len(calibration), 16)])

        def get_next(self):
            enc = next(self.batches, None)
            return None if enc is None else {k: v.astype(np.int64) for k, v in enc.items()}

    quantize_static(str(fp32), str(out / "static.onnx"), Calibration(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, **common)
    files["int8 static (QDQ)"] = out / "static.onnx"
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        files["4-bit blocks"] = files["8-bit blocks"] = f"not run: {exc}"
        return files
    for bits in (4, 8):
        q = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=bits, block_size=32,
                                 is_symmetric=True, accuracy_level=4)
        q.process()
        q.model.save_model_to_file(str(out / f"nb{bits}.onnx"), use_external_data_format=False)
        files[f"{bits}-bit blocks"] = out / f"nb{bits}.onnx"
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=SCIFACT)
    p.add_argument("--chunks", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # the quantizers log every tensor
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from search.embedding import resolve_model_path
    from search.embedding_onnx import OnnxSentenceModel
    from search.onnx_backend import OnnxEncoder, export_encoder

    path = resolve_model_path("all-MiniLM-L6-v2")
    texts = sample_chunks(args.dataset, "test", args.chunks)
    calibration = sample_chunks(args.dataset, "train", 128, skip_docs=2000)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="lorebot-onnx-variants-") as work:
        work = Path(work)
        export_encoder(path, work / "fp32.onnx")
        base = OnnxSentenceModel("all-MiniLM-L6-v2", path, work / "cache", int8=False)
        files = build_variants(work / "fp32.onnx", work, calibration, base.encoder.tokenizer)
        models = {"torch fp32": SentenceTransformer(str(path), device="cpu")}
        for name, f in files.items():
            if isinstance(f, Path):
                m = OnnxSentenceModel("all-MiniLM-L6-v2", path, work / "cache", int8=False)
                m.encoder = OnnxEncoder(f, path)
                models[name] = m
        vectors, speeds = {}, {name: [] for name in models}
        names = list(models)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                models[name].encode(texts[:8], batch_size=32)  # warm
                start = time.perf_counter()
                v = models[name].encode(texts, batch_size=32, normalize_embeddings=True)
                speeds[name].append(len(texts) / (time.perf_counter() - start))
                vectors[name] = np.asarray(v)
                print(f"round {r + 1} {name}: {speeds[name][-1]:.1f} chunks/s", flush=True)
    torch_v, torch_speed = vectors["torch fp32"], median(speeds["torch fp32"])
    results, rows = {}, []
    for name in names:
        cos = (vectors[name] * torch_v).sum(1)
        results[name] = {"chunks_per_s": median(speeds[name]),
                         "x_torch": median(speeds[name]) / torch_speed,
                         "rounds": speeds[name], "cosine_mean": float(cos.mean()),
                         "cosine_min": float(cos.min())}
        r = results[name]
        rows.append((name, f"{r['chunks_per_s']:5.1f} chunks/s ({r['x_torch']:.2f}x)  cosine to "
                           f"torch mean {r['cosine_mean']:.4f} min {r['cosine_min']:.4f}"))
    for name, f in files.items():
        if not isinstance(f, Path):
            results[name] = {"skipped": f}
            rows.append((name, f))
    print_table(f"MiniLM on ONNX Runtime variants, {len(texts)} SciFact chunks, "
                f"{args.rounds} rounds interleaved (median)", rows)
    print(f"wrote {write_result('onnx_variants', {'chunks': len(texts), 'rounds': args.rounds, 'results': results})}")


if __name__ == "__main__":
    main()
