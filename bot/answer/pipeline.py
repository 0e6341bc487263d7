"""The answer pipeline: question (+ conversation) → retrieval → evidence check → grounded answer.

It knows nothing of Slack: the CLI and the Slack handlers both call :meth:`AnswerPipeline.answer`
or :meth:`AnswerPipeline.stream` and render the :class:`Answer` they get back.

1. A follow-up becomes a standalone query (:func:`bot.answer.conversation.standalone_query`).
2. The retriever returns the ``search.top_k`` best passages (its default mode).
3. Evidence threshold: with reranking, the best reranker score must reach
   ``answer.min_rerank_score``; otherwise the best cosine ``similarity`` must reach
   ``answer.min_similarity`` (hits without a similarity count only when no hit has one). When the
   retriever judged the dense side weak for the query's language (``fusion_for``, e.g. a Chinese
   question and the English MiniLM), cosines mean little: a hit counts when its words cover at
   least ``answer.min_keyword_coverage`` of the question's (bot.answer.evidence). Below it the
   reply says the knowledge base does not cover the question and lists the nearest sources —
   no LLM call, no guessing (mode ``no_evidence``).
4. With an LLM: numbered sources in, checked and renumbered citations out (mode ``llm``).
   Without one, or when the LLM fails after its retries: the best passages quoted with their
   citations (mode ``extractive``), the failure explained in one line (``notice``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.answer.citations import CitationRewriter, CitedText, check_citations
from bot.answer.conversation import key_terms, standalone_query
from bot.answer.evidence import keyword_coverage
from bot.answer.llm import LLM, ChatMessage, LLMCutOffError, LLMError
from bot.answer.prompts import (
    CountTokens,
    PromptSource,
    build_answer_messages,
    estimate_tokens,
    fit_sources,
)
from bot.answer.notices import (  # noqa: F401 - the answer texts, importable from here too
    EXTRACTIVE_INTRO, LLM_CUT_NOTICE, LLM_EMPTY_NOTICE, LLM_SLOW_NOTICE, LLM_UNAVAILABLE_NOTICE,
    NO_EVIDENCE_TEXT, NOTHING_FOUND_TEXT, UNCITED_NOTICE, WEAK_EXTRACTIVE_INTRO,
)
from bot.answer.quotes import QUOTE_CHARS, SNIPPET_CHARS, quote_passage, snippet  # noqa: F401
from bot.answer.turns import Turn
from bot.settings import AnswerSettings, LLMSettings, SearchSettings
from search.models import Hit

logger = logging.getLogger(__name__)

AnswerMode = Literal["llm", "extractive", "no_evidence"]

# Extractive answers quote at most this many passages, each about QUOTE_CHARS long.
EXTRACTIVE_PASSAGES = 3
# The nearest sources shown when there is no evidence.
NEAREST_SOURCES = 3


@dataclass(frozen=True)
class Citation:
    """A source listed under an answer; ``n`` is the number used in the answer text."""

    n: int
    title: str
    path: str | None
    url: str | None
    snippet: str


@dataclass(frozen=True)
class Answer:
    """What the pipeline returns: text with ``[n]`` markers matching ``citations``.

    ``notice`` is a one-line remark for the user (the LLM was unavailable, nothing was cited);
    ``hits`` are the retrieved passages, best first; ``query`` is the search query used (the
    standalone rewrite of a follow-up).
    """

    text: str
    citations: tuple[Citation, ...]
    mode: AnswerMode
    notice: str | None
    hits: tuple[Hit, ...]
    query: str = ""


class Retriever(Protocol):
    """What the pipeline needs from ``search.retriever.Retriever``."""

    @property
    def has_reranker(self) -> bool: ...

    async def search(
        self, query: str, *, mode: str | None = None, k: int = 10,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]: ...


class PipelineSettings(Protocol):
    """The settings groups the pipeline reads (``bot.settings.Settings`` has them)."""

    answer: AnswerSettings
    llm: LLMSettings
    search: SearchSettings


@dataclass(frozen=True)
class _Retrieved:
    question: str
    query: str
    hits: tuple[Hit, ...]
    evidence: bool = False
    # The dense side is weak for this query's language: evidence is keyword coverage instead.
    weak_dense: bool = False


class AnswerPipeline:
    """Grounded answers from a retriever and, optionally, an LLM.

    ``count_tokens`` measures prompt text; the caller passes the embedding model's tokenizer.
    The default, :func:`bot.answer.prompts.estimate_tokens`, is ceil(len(text) / 4).
    """

    def __init__(
        self,
        retriever: Retriever,
        llm: LLM | None,
        settings: PipelineSettings,
        count_tokens: CountTokens = estimate_tokens,
    ) -> None:
        self.retriever = retriever
        self.llm = llm
        self.settings = settings
        self.count_tokens = count_tokens

    async def answer(self, question: str, history: Sequence[Turn] = (),
                     sources: Sequence[str] | None = None) -> Answer:
        """Answer ``question``, with ``history`` (oldest first) as the conversation so far;
        ``sources`` restricts the search to those source names (None: all)."""
        found = await self._retrieve(question, history, sources)
        if not found.evidence:
            return self._no_evidence(found)
        if self.llm is None:
            return self._extractive(found)
        sources = self._sources(found)
        if not sources:
            return self._extractive(found)
        try:
            async with asyncio.timeout(self.settings.llm.answer_deadline_s):
                text = await self.llm.complete(self._messages(found, sources))
        except TimeoutError:
            logger.warning("LLM gave no answer within %.0f s, answering extractively",
                           self.settings.llm.answer_deadline_s)
            return self._extractive(found, notice=LLM_SLOW_NOTICE)
        except LLMError as exc:
            logger.warning("LLM failed, answering extractively: %s", exc)
            return self._extractive(found, notice=LLM_UNAVAILABLE_NOTICE)
        cited = check_citations(text, sources)
        if not cited.text:
            return self._extractive(found, notice=LLM_EMPTY_NOTICE)
        return self._llm_answer(found, cited)

    async def stream(
        self, question: str, history: Sequence[Turn] = (), sources: Sequence[str] | None = None
    ) -> AsyncIterator[str | Answer]:
        """Yield text deltas, then the final :class:`Answer` last.

        With an LLM the deltas are the model's reply with citations already checked and
        renumbered, so the streamed text equals ``Answer.text`` (up to surrounding blanks).
        Extractive and no-evidence replies arrive as one delta. If the model fails mid-stream,
        the extractive answer follows as a further delta after a blank line, and the final
        Answer is that extractive answer with a notice: a consumer that can edit what it showed
        should replace the streamed text with ``Answer.text``.
        """
        found = await self._retrieve(question, history, sources)
        sources = self._sources(found) if found.evidence and self.llm is not None else []
        if not sources:
            final = self._no_evidence(found) if not found.evidence else self._extractive(found)
            yield final.text
            yield final
            return

        assert self.llm is not None  # sources are only prepared when there is a model
        rewriter = CitationRewriter(sources)
        emitted = False
        s = self.settings.llm
        loop = asyncio.get_running_loop()
        started, notice = loop.time(), None
        try:
            # The first token within first_token_s, the whole answer within answer_deadline_s
            # (retries included). Each delta is awaited under the time left, never the
            # consumer's work between yields (a timeout around a yield would cancel that).
            async with aclosing(self.llm.stream(self._messages(found, sources))) as deltas:
                first = True
                while True:
                    until = started + min(s.first_token_s if first else s.answer_deadline_s,
                                          s.answer_deadline_s)
                    try:
                        delta = await asyncio.wait_for(anext(deltas), max(until - loop.time(), 0.001))
                    except StopAsyncIteration:
                        break
                    first = False
                    if text := rewriter.feed(delta):
                        emitted = emitted or bool(text.strip())
                        yield text
            if text := rewriter.finish():
                emitted = emitted or bool(text.strip())
                yield text
        except TimeoutError:
            logger.warning("LLM missed its deadline (%.0f s in, first token %s), answering "
                           "extractively", loop.time() - started, "seen" if emitted else "never")
            notice = LLM_SLOW_NOTICE
        except LLMCutOffError as exc:
            logger.warning("LLM answer cut off, answering extractively: %s", exc)
            notice = LLM_CUT_NOTICE
        except LLMError as exc:
            logger.warning("LLM failed, answering extractively: %s", exc)
            notice = LLM_UNAVAILABLE_NOTICE
        if notice is not None:
            final = self._extractive(found, notice=notice)
            yield ("\n\n" if emitted else "") + final.text
            yield final
            return
        cited = rewriter.result()
        if not cited.text:
            final = self._extractive(found, notice=LLM_EMPTY_NOTICE)
            yield final.text
            yield final
            return
        yield self._llm_answer(found, cited)

    # -- steps ----------------------------------------------------------------------------------

    async def _retrieve(self, question: str, history: Sequence[Turn],
                        sources: Sequence[str] | None = None) -> _Retrieved:
        question = question.strip()
        if not question:
            raise ValueError("the question is empty; ask something about the knowledge base")
        query = await standalone_query(
            question, history, self.llm, self.settings.llm, self.count_tokens
        )
        hits = tuple(await self.retriever.search(query, k=self.settings.search.top_k,
                                                 **({"sources": sources} if sources is not None else {})))
        found = _Retrieved(question, query, hits, weak_dense=self._dense_is_weak(query))
        evidence = any(self._is_evidence(hit, found) for hit in hits)
        # Question text stays out of INFO logs: it may be confidential.
        logger.info("Retrieved %d hits, evidence=%s, rewritten=%s, weak dense=%s", len(hits),
                    evidence, query != question, found.weak_dense)
        logger.debug("Search query %r", query)
        return dataclasses.replace(found, evidence=evidence)

    def _dense_is_weak(self, query: str) -> bool:
        """Whether the retriever's fusion judged the embedder weak for this query's language."""
        fusion_for = getattr(self.retriever, "fusion_for", None)
        return bool(fusion_for is not None and fusion_for(query).dense_is_weak)

    def _reranked(self) -> bool:
        """Whether hit scores come from the reranker: it exists and the default mode uses it."""
        if not getattr(self.retriever, "has_reranker", False):
            return False
        mode = getattr(self.retriever, "default_mode", None) or self.settings.search.default_mode
        return mode == "rerank"

    def _is_evidence(self, hit: Hit, found: _Retrieved) -> bool:
        """Whether this hit alone clears the evidence threshold (see the module docstring)."""
        s, hits = self.settings.answer, found.hits
        if self._reranked():
            return hit.score >= s.min_rerank_score
        if found.weak_dense:
            return _coverage(found.query, hit) >= s.min_keyword_coverage
        if hit.similarity is None:
            # Keyword search alone gives no comparable score, so its hits count only when nothing
            # was measured semantically; in hybrid mode a hit the dense side never ranked is a weak
            # match, and counting it let off-topic questions through on large indexes.
            return all(h.similarity is None for h in hits)
        return hit.similarity >= s.min_similarity

    def _sources(self, found: _Retrieved) -> list[PromptSource]:
        """The hits that fit the prompt's context budget (none only if the budget is absurd)."""
        return fit_sources(found.hits, self.settings.llm.context_tokens, self.count_tokens)

    def _messages(self, found: _Retrieved, sources: Sequence[PromptSource]) -> list[ChatMessage]:
        return build_answer_messages(found.query, sources, asked_as=found.question)

    # -- the three kinds of answer --------------------------------------------------------------

    def _llm_answer(self, found: _Retrieved, cited: CitedText[PromptSource]) -> Answer:
        if cited.invalid:
            logger.info("Dropped citations to missing sources: %s", cited.invalid)
        citations = tuple(
            _citation(i, source.hit) for i, source in enumerate(cited.cited, start=1)
        )
        notice = UNCITED_NOTICE if cited.cites_nothing else None
        return Answer(cited.text, citations, "llm", notice, found.hits, found.query)

    def _extractive(self, found: _Retrieved, notice: str | None = None) -> Answer:
        """The best passages quoted, each followed by its citation; no model involved.

        At most :data:`EXTRACTIVE_PASSAGES` quotes from at most ``answer.max_sources``
        documents; passages of one document share its number.
        """
        terms = key_terms(found.query)
        numbers: dict[str, int] = {}  # doc_id -> citation number
        cited: list[Hit] = []  # the best passage of each cited document, by number
        quotes: list[str] = []
        seen_text: set[str] = set()
        for hit in found.hits:
            flat = " ".join(hit.text.split())
            # The best hit is quoted regardless; the others must clear the threshold themselves.
            if flat in seen_text or (quotes and not self._is_evidence(hit, found)):
                continue
            n = numbers.get(hit.doc_id)
            if n is None:
                if len(cited) == self.settings.answer.max_sources:
                    continue
                cited.append(hit)
                n = numbers[hit.doc_id] = len(cited)
            seen_text.add(flat)
            quotes.append(f"> {quote_passage(hit.text, terms)} [{n}]")
            if len(quotes) == EXTRACTIVE_PASSAGES:
                break
        text = "\n\n".join([self._intro(found), *quotes])
        citations = tuple(_citation(n, hit) for n, hit in enumerate(cited, start=1))
        return Answer(text, citations, "extractive", notice, found.hits, found.query)

    def _intro(self, found: _Retrieved) -> str:
        """The extractive answer's first line: a plain one when the best passage is a strong
        match, else one that says the knowledge base may not cover the question."""
        if self._reranked():
            return EXTRACTIVE_INTRO
        if found.weak_dense:
            best_cover = max((_coverage(found.query, h) for h in found.hits), default=0.0)
            strong = best_cover >= self.settings.answer.strong_keyword_coverage
            return EXTRACTIVE_INTRO if strong else WEAK_EXTRACTIVE_INTRO
        best = max((h.similarity for h in found.hits if h.similarity is not None), default=None)
        if best is None or best >= self.settings.answer.strong_similarity:
            return EXTRACTIVE_INTRO
        return WEAK_EXTRACTIVE_INTRO

    def _no_evidence(self, found: _Retrieved) -> Answer:
        """Say the knowledge base does not cover it; list the nearest documents, once each."""
        limit = min(NEAREST_SOURCES, self.settings.answer.max_sources)
        nearest = _best_per_document(found.hits)[:limit]
        text = NO_EVIDENCE_TEXT if nearest else NOTHING_FOUND_TEXT
        citations = tuple(_citation(n, hit) for n, hit in enumerate(nearest, start=1))
        return Answer(text, citations, "no_evidence", None, found.hits, found.query)


def _best_per_document(hits: Sequence[Hit]) -> list[Hit]:
    """The first (best) hit of each document, in rank order."""
    best: dict[str, Hit] = {}
    for hit in hits:
        best.setdefault(hit.doc_id, hit)
    return list(best.values())


def _coverage(query: str, hit: Hit) -> float:
    """How much of the query the hit's title, headings and text cover (bot.answer.evidence)."""
    return keyword_coverage(query, " ".join((hit.title, *hit.headings, hit.text)))


def _citation(n: int, hit: Hit) -> Citation:
    return Citation(n, hit.title, hit.path, hit.url, snippet(hit.text))
