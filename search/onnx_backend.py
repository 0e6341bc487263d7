"""ONNX Runtime inference for the embedder and the reranker: export once, cache, run.

Why: on a 2-core CPU, torch eager runs MiniLM far below what the cores can do, and never in
int8. ONNX Runtime fuses the transformer's operators and, with dynamically quantized (int8)
weights, multiplies in 8-bit integers.

Why not sentence-transformers' ``backend="onnx"``: it needs optimum's ONNX Runtime integration
(optimum-onnx), whose releases all require transformers < 4.58, and lorebot runs transformers 5.
So the export is PyTorch's own exporter (``torch.onnx.export``) of the Hugging Face encoder
(``AutoModel``: token ids in, last hidden state out), the int8 copy is ONNX Runtime's dynamic
quantizer with unsigned 8-bit weights (the AVX2 setting optimum uses: signed weights can saturate
without VNNI), and what follows the encoder (pooling, normalising, the reranker's cosine) stays
in numpy, where it is a few lines.

Exports are cached under ``<data dir>/onnx/<identity>/`` (fp32 and int8 side by side), keyed by
the model's identity: the registry id or path, and a hash of its weight and config files. A
promoted fine-tuned model is exported once, on first use; a retrained one in place gets a new
key. Each export is written to a temporary directory and renamed into place, so a killed export
leaves no half-written cache. Training stays on torch. torch is imported only to export.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from search.models import model_key

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
MODEL_FILE = "model.onnx"
_OPSET = 17
# Part of every cache key: bump it when the export or quantization changes, so no cache (a test
# run's shared one, say) serves an export made the old way.
EXPORT_VERSION = "1"
# What the int8 copy is made by (quantize_int8): its exports live apart per version, and it is
# in the index fingerprint (vector_tag), so vectors of an older int8 recipe are re-embedded
# rather than searched with the new one's query vectors. 2: first and last FFN output in fp32.
INT8_VERSION = 2
# The files whose bytes make a model what it is (weights, architecture, tokenizer, head).
_IDENTITY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                   "vocab.txt", "tokenizer_config.json")
_warned: set[str] = set()
_export_lock = threading.Lock()


def missing_runtime() -> str | None:
    """Why the ONNX backends cannot run here (a package to install), or None when they can."""
    for module in ("onnxruntime", "onnx"):  # onnx: the exporter and the quantizer write it
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (pip install {module})"
    return None


def effective_backend(requested: str, *, device: str = "cpu", what: str = "model",
                      cache_dir: Path | None = None) -> str:
    """The backend a model runs on: ``requested``, or torch (with one log line per reason and
    process) when ONNX Runtime is missing or the device is not the CPU (only the CPU provider
    is used here). The ONNX backends need ``cache_dir``, where the exports are kept."""
    if requested not in BACKENDS:
        raise ValueError(f"inference backend {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested != "torch" and cache_dir is None:
        raise ValueError(f"the {requested} backend needs a cache_dir for its exported model")
    if requested == "torch":
        return "torch"
    reason = missing_runtime()
    if reason is None and device != "cpu":
        reason = f"device {device!r} is not the CPU"
    if reason is None:
        return requested
    if reason not in _warned:
        _warned.add(reason)
        log.warning("inference backend %s unavailable (%s): the %s runs on torch", requested,
                    reason, what)
    return "torch"


def vector_tag(backend: str) -> str:
    """What the index fingerprint names for vectors of ``backend`` (search.indexer)."""
    return f"{backend}.v{INT8_VERSION}" if backend == "onnx-int8" else backend


def model_identity(model_id: str, path: str | Path) -> str:
    """A short hash naming one model's exports: its registry id or path, and its files' bytes."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}|{model_key(str(model_id))}".encode())
    if model_key(str(model_id)) == str(model_id):  # not a registry model: the path names it
        digest.update(str(Path(path).resolve()).encode())
    for name in _IDENTITY_FILES:
        file = Path(path) / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:20]


def cached_export(model_id: str, path: str | Path, cache_root: Path, *, int8: bool) -> Path:
    """The ONNX file of ``path``'s encoder (``int8``: its quantized copy), exported into
    ``cache_root`` on first use and reused after."""
    base = Path(cache_root) / model_identity(model_id, path)
    fp32, q8 = base / "fp32" / MODEL_FILE, base / f"int8-v{INT8_VERSION}" / MODEL_FILE
    target = q8 if int8 else fp32
    if target.is_file():
        return target
    with _export_lock:  # one export at a time in this process; other processes: see _publish
        if not fp32.is_file():
            log.info("exporting %s to ONNX (once per model) into %s", path, fp32.parent)
            _publish(fp32.parent, lambda tmp: export_encoder(path, tmp / MODEL_FILE))
        if int8 and not q8.is_file():
            log.info("quantizing %s to int8 (once per model) into %s", path, q8.parent)
            _publish(q8.parent, lambda tmp: quantize_int8(fp32, tmp / MODEL_FILE))
    return target


def _publish(final: Path, build) -> None:
    """Build into a temporary sibling directory, then rename it into place: readers see a whole
    export or none. Another process that got there first wins; ours is dropped."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_encoder(src: str | Path, out: Path) -> None:
    """Export the Hugging Face encoder in ``src`` (token ids in, last hidden state out) with
    PyTorch's exporter; batch and sequence length stay dynamic."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    # Eager attention exports the operator pattern ONNX Runtime fuses into its Attention kernel.
    try:
        model = AutoModel.from_pretrained(str(src), add_pooling_layer=False,
                                          attn_implementation="eager")
    except (TypeError, ValueError):  # no pooler argument, or no eager attention: the defaults
        model = AutoModel.from_pretrained(str(src))
    model.eval()
    names = input_names(AutoTokenizer.from_pretrained(str(src)))

    class Encoder(torch.nn.Module):  # positional inputs in ``names`` order, one output
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(Encoder(model), sample, str(out), input_names=list(names),
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=_OPSET, dynamo=False)


def input_names(tokenizer) -> tuple[str, ...]:
    """The encoder inputs the tokenizer produces (BERT: ids, attention mask, token types)."""
    produced = tokenizer("a", "b")
    return tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in produced)


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantization of the matrix multiplications: weights quantized once (signed,
    per output channel, 7-bit range), activations per batch; two stay fp32 (``fp32_kept``).

    The 7-bit range (``reduce_range``) is what ONNX Runtime advises on AVX2 without VNNI, whose
    8-bit multiply-add saturates; on MiniLM and SciFact passages it kept the cosine to the fp32
    vectors at 0.993 on average, against 0.973 with unsigned per-tensor weights (optimum's AVX2
    preset) and 0.933 with full-range signed ones.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs every tensor to the root
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=fp32_kept(fp32))
    finally:
        root.setLevel(level)


def fp32_kept(onnx_file: Path) -> list[str]:
    """The matrix multiplications int8 leaves in fp32: the feed-forward output projection of the
    first and the last encoder layer, where quantizing costs the vectors most (the GELU before
    them has the widest activations). On MiniLM it raised the cosine to the fp32 vectors from
    0.9933 to 0.9949 (bench/onnx_variants.py) and brought SciFact hybrid nDCG@10 within 0.005 of
    fp32 (-0.0034, against -0.0056), for about 8% of int8's speed end to end (1.72x torch to
    1.59x, bench/index_throughput.py). Found by the names the exporter gives a BERT-style
    encoder's nodes; a model named otherwise keeps none."""
    import onnx

    layer = re.compile(r"/layer\.(\d+)/output/dense/MatMul$")
    found = {int(m.group(1)): node.name for node in onnx.load(str(onnx_file)).graph.node
             if node.op_type == "MatMul" and (m := layer.search(node.name))}
    return [found[i] for i in sorted({min(found), max(found)})] if found else []


class OnnxEncoder:
    """An ONNX Runtime session over an exported encoder, with the model's own tokenizer."""

    def __init__(self, onnx_file: Path, tokenizer_path: str | Path):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_file), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))

    def tokenize(self, texts, pairs=None, *, max_length: int) -> dict[str, np.ndarray]:
        return dict(self.tokenizer(texts, pairs, padding=True, truncation="longest_first",
                                   max_length=max_length, return_tensors="np"))

    def hidden(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        """The last hidden state, (batch, tokens, dim) float32."""
        feed = {n: enc[n].astype(np.int64) for n in self.inputs}
        return self.session.run(None, feed)[0]


def masked_mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors where ``mask`` is 1 (as sentence-transformers' mean pooling)."""
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
