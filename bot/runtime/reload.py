"""Models promoted or rolled back by another process take effect in a running one, no restart.

`lorebot models promote|rollback`, `lorebot finetune ...` and training jobs in a worker
(bot.jobs.training) change the model registry (``<data dir>/models/registry.json``), while a bot,
a terminal chat or a worker built its models at start (bot.runtime.services). So before each search and
each index run the services look at the registry file: one ``stat`` (its mtime, size and inode:
the registry is replaced atomically, so every change is a new file) at most once per second.
When the file changed and its active models differ from the ones in use, the new ones are loaded
on the model thread and warmed up, and only then swapped in:

* the swap itself waits until the searches in flight are done, and searches arriving meanwhile
  wait for it (a moment: the models are loaded already), so a search runs with one set of models
  from start to end, never with a half-loaded or half-swapped one;
* an embedder is swapped in only once the index's vectors are the new model's (``meta.embedder``,
  which an embedder promotion writes before it moves the registry, see bot.training.promotion),
  and never during an index run, whose vectors would then come from two models. Until then the
  index answers BM25 only (search.index.sqlite) and the swap is retried at the next check; index
  runs starting while an embedder is loaded wait for it;
* a model that fails to load is logged and the one in use kept (until the registry changes).

A check before each request rather than a background watcher: no task to keep alive, nothing to
do while the bot is idle. The request that notices a change waits for the load (seconds for a
cross-encoder); concurrent ones go on with the old models, and they would wait for the single
model thread anyway while it loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bot.runtime.factories import (
    ActiveModels,
    active_models,
    embedding_model,
    new_embedder,
    new_indexer,
    new_reranker,
)
from bot.settings import Settings

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0  # at most one stat of registry.json per second


def registry_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the registry file is rewritten; None: there is no registry yet."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ModelReloader:
    """Keeps one process's services on the registry's active models (see the module docstring).

    Built by ``bot.runtime.services.build_services`` when the settings use registry models; ``attach``
    wraps the services' retriever and indexer so every search and index run checks first.
    """

    def __init__(self, settings: Settings, registry, *,
                 interval_s: float = CHECK_INTERVAL_S) -> None:
        self.settings = settings
        self.registry = registry
        self.interval_s = interval_s
        # Taken before build_services reads the registry: a change in between is seen as one.
        self._seen = registry_signature(registry.file)
        self._checked = time.monotonic()
        self.services = None
        self.current: ActiveModels | None = None
        self._retriever: LiveRetriever | None = None
        self._indexer: LiveIndexer | None = None
        self._pending = False  # an embedder swap waits (index not re-embedded yet, an index run)
        self._task: asyncio.Task | None = None
        self._searches = 0
        self._index_runs = 0
        self._idle: asyncio.Event | None = None  # set when the last search in flight ends
        self._search_gate: asyncio.Event | None = None  # while swapping: new searches wait
        self._index_gate: asyncio.Event | None = None  # while an embedder loads: index runs wait
        self._told: set[str] = set()

    def attach(self, services, models: ActiveModels) -> None:
        """Follow the registry for ``services``, built with ``models``."""
        self.services, self.current = services, models
        self._retriever = LiveRetriever(services.retriever, self)
        self._indexer = LiveIndexer(services.indexer, self)
        services.retriever, services.indexer, services.reloader = (
            self._retriever, self._indexer, self)

    @property
    def swapping(self) -> bool:
        """Whether a swap is waiting for the searches in flight (new searches wait for it)."""
        return self._search_gate is not None

    # -- checking ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Swap in the registry's active models if they changed; a no-op most of the time.

        Never raises: a failed check is logged and the models in use stay.
        """
        if self._task is not None or self.services is None:
            return  # a reload is under way: this request goes on with the models in use
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return
        self._checked = now
        signature = registry_signature(self.registry.file)
        if signature == self._seen and not self._pending:
            return
        self._task = asyncio.create_task(self._reload(signature))
        # Shielded: a request cancelled meanwhile must not abort the reload half-way.
        await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """Stop a reload under way (the services are closing)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reload(self, signature) -> None:
        self._seen, self._pending = signature, False
        try:
            wanted = await asyncio.to_thread(embedding_model, self.settings, self.registry)
            # The adapter is chosen for the embedder this process will use, which stays the
            # old one until the index holds the new one's vectors.
            embedder = await self._embedder_to_use(wanted)
            target = await asyncio.to_thread(active_models, self.settings, self.registry,
                                             embedder=embedder)
            if target != self.current:
                await self._switch(target)
        except Exception:
            log.exception("checking the model registry %s failed; keeping the models in use",
                          self.registry.file)
        finally:
            self._task = None
            if (gate := self._index_gate) is not None:
                self._index_gate = None
                gate.set()

    async def _embedder_to_use(self, wanted: str) -> str:
        """``wanted`` if the index's vectors are its own and no index run is under way, else
        the embedder in use (retried at the next check)."""
        current = self.current.embedder
        if wanted == current:
            return current
        index = self.services.index
        path = getattr(index, "path", None)
        if path is None or not hasattr(index, "embedder_model"):
            self._tell(f"the registry's embedder is {wanted}, but only the embedded index records "
                       "which model its vectors are from: keeping the embedder "
                       f"{current}; restart lorebot once the index holds the new vectors")
            return current
        if Path(path).exists():
            from search.index.sqlite_reembed import stored_embedder

            stored = await asyncio.to_thread(stored_embedder, path)
            if stored != wanted:
                self._pending = True
                self._tell(f"the registry's embedder is {wanted}, but the index {path} holds "
                           f"vectors of {stored or 'an unrecorded model'}: keeping {current} "
                           "until it is re-embedded")
                return current
        if self._index_runs:
            self._pending = True
            self._tell(f"switching to the embedder {wanted} once the index run under way ends")
            return current
        # From here until the swap, new index runs wait: none may embed with the old model and
        # commit under the new one. (No await since the check above: nothing started between.)
        self._index_gate = asyncio.Event()
        return wanted

    # -- loading and swapping ----------------------------------------------------------------

    async def _switch(self, target: ActiveModels) -> None:
        """Load what ``target`` changes, then swap it all in at once."""
        from search.adapter import AdaptedEmbedder

        svc, old = self.services, self.current
        base = getattr(svc.embedder, "inner", svc.embedder)  # without the adapter
        adapter = getattr(svc.embedder, "adapter", None)
        reranker = svc.reranker
        in_use = old
        if target.embedder != old.embedder:
            embedder = await self._load("embedder", target.embedder,
                                        lambda: _warm_embedder(new_embedder(self.settings,
                                                                            target.embedder)))
            if embedder is None:  # keep the embedder, and choose the adapter for it
                target = await asyncio.to_thread(active_models, self.settings, self.registry,
                                                 embedder=old.embedder)
            else:
                base, in_use = embedder, dataclasses.replace(in_use, embedder=target.embedder)
                # The old adapter was trained for the old embedder: never keep it with this one.
                adapter, in_use = None, dataclasses.replace(in_use, adapter=None)
        if target.adapter != in_use.adapter:
            if target.adapter is None:
                adapter, in_use = None, dataclasses.replace(in_use, adapter=None)
            elif (loaded := await self._load("adapter", target.adapter,
                                             lambda: _warm_adapter(base, target.adapter))):
                adapter, in_use = loaded, dataclasses.replace(in_use, adapter=target.adapter)
        if target.reranker != in_use.reranker:
            if target.reranker is None:
                reranker, in_use = None, dataclasses.replace(in_use, reranker=None)
            elif (loaded := await self._load("reranker", target.reranker,
                                             lambda: _warm_reranker(new_reranker(
                                                 self.settings, target.reranker)))):
                reranker, in_use = loaded, dataclasses.replace(in_use, reranker=target.reranker)
        if in_use == old:
            return
        query_embedder = AdaptedEmbedder(base, adapter) if adapter is not None else base
        async with self._exclusive():
            if in_use.embedder != old.embedder:
                svc.index.embedder_model = in_use.embedder
                self._indexer.inner = new_indexer(self.settings, svc.index, base)
            self._retriever.inner.use_models(query_embedder, reranker)
            svc.embedder, svc.reranker, self.current = query_embedder, reranker, in_use
        log.info("now using the registry's models (%s): embedder %s, adapter %s, reranker %s",
                 self.registry.file, in_use.embedder, in_use.adapter or "none",
                 in_use.reranker or "none")
        if reranker is None and self.settings.search.default_mode == "rerank":
            log.warning("LOREBOT_SEARCH__DEFAULT_MODE is rerank but no reranker is active now: "
                        "searches fail until one is promoted; unset the setting or promote one")

    async def _load(self, kind: str, what, build: Callable[[], object]):
        """``build()`` on the model thread; None (logged) if it fails."""
        from search.models_runtime import run_model

        try:
            return await run_model(build)
        except Exception as exc:
            log.error("cannot load the %s %s that the model registry %s made active: %s; "
                      "keeping the one in use (fix or roll back the candidate: `lorebot models`)",
                      kind, what, self.registry.file, exc)
            return None

    # -- who is using the models ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def searching(self) -> AsyncIterator[None]:
        """Around one search: the models do not change under it."""
        while (gate := self._search_gate) is not None:
            await gate.wait()
        self._searches += 1
        try:
            yield
        finally:
            self._searches -= 1
            if not self._searches and self._idle is not None:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def indexing(self) -> AsyncIterator[None]:
        """Around one index run: the embedder does not change under it."""
        while (gate := self._index_gate) is not None:
            await gate.wait()
        self._index_runs += 1
        try:
            yield
        finally:
            self._index_runs -= 1

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """No search in flight: new ones wait, the ones under way finish first."""
        gate = self._search_gate = asyncio.Event()
        try:
            while self._searches:
                self._idle = asyncio.Event()
                await self._idle.wait()
            yield
        finally:
            self._search_gate, self._idle = None, None
            gate.set()

    def _tell(self, message: str) -> None:
        """Log a waiting state once, not at every check."""
        if message not in self._told:
            self._told.add(message)
            log.info("%s", message)


def _warm_embedder(embedder):
    embedder.warm_up()
    embedder.tokenizer  # noqa: B018 - counting tokens must not load it on the event loop later
    return embedder


def _warm_adapter(embedder, directory: Path):
    """The adapter, checked against a real query vector of ``embedder`` (wrong size: an error)."""
    from search.adapter import QueryAdapter

    adapter = QueryAdapter.load(directory)
    adapter.apply(embedder.encode(["warm up"])[0])
    return adapter


def _warm_reranker(reranker):
    reranker.warm_up()
    return reranker


class LiveRetriever:
    """The services' retriever: checks the registry before each search (``ModelReloader``)."""

    def __init__(self, inner, reloader: ModelReloader) -> None:
        self.inner = inner
        self._reloader = reloader

    def __getattr__(self, name):  # index, default_mode, has_reranker, embedder, reranker, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def search(self, query: str, **kwargs):
        await self._reloader.refresh()
        async with self._reloader.searching():
            return await self.inner.search(query, **kwargs)


class LiveIndexer:
    """The services' indexer: checks the registry before each index run (``ModelReloader``)."""

    def __init__(self, inner, reloader: ModelReloader) -> None:
        self.inner = inner
        self._reloader = reloader

    def __getattr__(self, name):  # embedder, fingerprint, chunker, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def index_documents(self, *args, **kwargs):
        await self._reloader.refresh()
        async with self._reloader.indexing():
            return await self.inner.index_documents(*args, **kwargs)
