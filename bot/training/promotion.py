"""Promoting and rolling back an embedder: a new model means a new vector for every chunk.

An adapter or a reranker takes effect at once; an embedder must not, because the index holds
the old model's vectors. So a promotion re-embeds every embedded index that follows the active
embedder, each in one transaction (``search.index.sqlite_reembed``), and only then moves the
registry. The order matters to readers:

* every re-embedded file records its model (``meta.embedder``) in the same transaction as its
  vectors, and a SQLite index whose process embeds with another model answers no k-NN (BM25
  only) and refuses writes that would mix models: a process started before the promotion never
  pairs its old query vectors with new chunk vectors, it degrades until it loads the new model
  (bot.runtime.reload: at its next search or reindex once the registry has moved) or restarts;
* the registry moves last, so a process started in between loads the old model, sees the file's
  new one, and degrades the same way instead of mixing; the next one loads the new model.

Before re-embedding, each index is copied (``models/<id>/previous/``, with the model its vectors
are from), so a rollback swaps the previous vectors back without re-embedding; chunks indexed
since then are embedded with the previous model. The candidate index the gate evaluated
(``models/<id>/indexes/``) gives the promotion its vectors the same way.

OpenSearch is not wired: promoting there would need a re-embedded physical index behind the
alias; the command refuses and says what to run.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

from bot.console import CliError
from bot.settings import Settings
from search.models import same_model

CANDIDATE_DIR = "indexes"  # models/<id>/indexes/: the gate's index re-embedded with <id>
PREVIOUS_DIR = "previous"  # models/<id>/previous/: each index as it was before <id> was promoted


def check_embedder_backend(settings: Settings) -> None:
    """Refuse embedder promotion where it cannot keep the index consistent."""
    if settings.search.backend == "opensearch":
        raise CliError(
            "promoting an embedder re-embeds the index, which is wired for the embedded (SQLite) "
            "index only, not OpenSearch. Run it on the embedded index "
            "(LOREBOT_SEARCH__BACKEND=sqlite `lorebot finetune embedder ...`), then copy the "
            "re-embedded index into the cluster behind a new alias with `lorebot opensearch "
            "migrate`, and switch the backend back; or fine-tune the adapter or reranker instead"
        )
    if not settings.finetune.use_registry:
        raise CliError(
            "LOREBOT_FINETUNE__USE_REGISTRY is false, so lorebot would not use a promoted "
            "embedder while its index is re-embedded with it; set it to true first"
        )


def model_id(settings: Settings, registry, candidate_id: str | None) -> str:
    """How a model is named everywhere (bot.runtime.services.embedding_model): None is the base model."""
    if candidate_id is None:
        return settings.search.embedding_model
    return str(registry.path(candidate_id).resolve())


def copy_name(index_path: Path) -> str:
    """One file name per index (by absolute path), for the copies kept in the registry."""
    resolved = Path(index_path).resolve()
    return f"{resolved.stem}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}.sqlite3"


async def build_candidate_index(src: Path, candidate_dir: Path, embedder, progress=None) -> Path:
    """A copy of the index at ``src`` with every chunk re-embedded by ``embedder``."""
    from search.index.sqlite_reembed import copy_index, reembed
    from search.models_runtime import run_model

    dst = candidate_dir / CANDIDATE_DIR / copy_name(src)
    await asyncio.to_thread(copy_index, src, dst, meta={"origin": str(Path(src).resolve())})
    await run_model(reembed, dst, embedder.encode, embedder.model_id, progress=progress)
    return dst


async def promote_embedder(settings: Settings, registry, candidate_id: str, *,
                           extra: Iterable[Path] = (), say=None):
    """Re-embed every following index with the candidate, then make it the active embedder."""
    from bot.runtime.factories import embedding_model
    from search.index.sqlite_reembed import copy_index, stored_embedder

    check_embedder_backend(settings)
    cand = registry.get(candidate_id)
    if cand.kind != "embedder":
        raise CliError(f"{candidate_id} is a {cand.kind}, not an embedder")
    target = model_id(settings, registry, candidate_id)
    current = embedding_model(settings, registry)
    for path in _following_indexes(settings, registry, extra):
        pinned = stored_embedder(path)
        if same_model(pinned, target):
            continue
        await asyncio.to_thread(
            copy_index, path, registry.path(candidate_id) / PREVIOUS_DIR / copy_name(path),
            meta={"embedder": pinned or current, "origin": str(path.resolve())})
        await _reembed(settings, registry, path, target, say, previous=pinned or current)
    return registry.promote(candidate_id)


async def rollback_embedder(settings: Settings, registry, say=None):
    """Re-embed every following index with the previous embedder, then pop the active one."""
    check_embedder_backend(settings)
    stack = registry.stack("embedder")
    if not stack:
        raise CliError("no active embedder to roll back; the base model is in use")
    target = model_id(settings, registry, stack[-2] if len(stack) > 1 else None)
    current = model_id(settings, registry, stack[-1])
    from search.index.sqlite_reembed import stored_embedder

    for path in _following_indexes(settings, registry, ()):
        if (pinned := stored_embedder(path)) != target:
            await _reembed(settings, registry, path, target, say, previous=pinned or current)
    return registry.rollback("embedder")


def _following_indexes(settings: Settings, registry, extra: Iterable[Path]) -> list[Path]:
    """The live index, ``extra``, and every index an earlier promotion re-embedded.

    Those must all follow the active embedder: a re-embed keeps the stored content hashes, so
    an index left on another model would look up to date to the indexer.
    """
    from search.index.sqlite_reembed import read_meta

    paths = [settings.index_path, *extra]
    for copy in sorted(registry.root.glob(f"*/{PREVIOUS_DIR}/*.sqlite3")):
        if origin := read_meta(copy).get("origin"):
            paths.append(Path(origin))
    out: dict[Path, Path] = {}
    for path in paths:
        if path is not None and Path(path).is_file():
            out.setdefault(Path(path).resolve(), Path(path))
    return list(out.values())


def _vector_sources(registry, index_path: Path) -> list[Path]:
    """Copies kept in the registry that were taken from ``index_path`` (any model: the
    re-embed uses only those whose vectors are of the target model)."""
    from search.index.sqlite_reembed import read_meta

    origin = str(Path(index_path).resolve())
    name = copy_name(index_path)
    found = []
    for pattern in (f"*/{CANDIDATE_DIR}/{name}", f"*/{PREVIOUS_DIR}/{name}"):
        found += [p for p in registry.root.glob(pattern) if read_meta(p).get("origin") == origin]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)  # newest first


async def _reembed(settings: Settings, registry, path: Path, target: str, say, *,
                   previous: str) -> None:
    """Re-embed ``path`` with ``target``; ``previous``: the model its vectors are of now.

    The file keeps its content hashes, which name the model they were computed with: the
    re-embed records ``previous`` as that model (once), so the next reindex with ``target``
    re-embeds nothing unchanged (``search.index.sqlite_reembed``).
    """
    from bot.runtime.factories import new_embedder
    from search.index.sqlite_reembed import reembed
    from search.models_runtime import run_model

    # The configured inference backend (SEARCH__INFERENCE), as queries will be embedded with.
    embedder = new_embedder(settings, target)
    summary = await run_model(reembed, path, embedder.encode, target,
                              reuse=_vector_sources(registry, path), previous_model=previous)
    (say or _stderr)(f"re-embedded {path}: {summary.chunks} chunks, {summary.reused} vectors "
                     f"reused, {summary.embedded} embedded ({summary.seconds:.1f} s)")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)
