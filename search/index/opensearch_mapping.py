"""What the OpenSearch backend creates on the cluster: the index template, physical indexes, fields.

Layout on the cluster, for ``prefix = "lorebot"``:

* an index template ``lorebot`` matching ``lorebot-v*``: shards, replicas, ``index.knn: true``,
  the analyzers, and every field but the vector (its dimension belongs to the embedding model,
  so each physical index gets it when it is created, or on its first vector);
* physical indexes ``lorebot-v1``, ``lorebot-v2``, …; a full rebuild writes the next one;
* the read alias ``lorebot`` on exactly one of them: readers and writers only ever name the
  alias, and a rebuild moves it in one ``_aliases`` call.

One index holds two kinds of records, told apart by the ``kind`` keyword: one ``document``
record per document (content hash, path, URL, chunk count, indexed time: what the indexer and
``source_stats`` need) and one ``chunk`` record per chunk (text, heading path, vector). Keeping
both in one index means one alias swap moves both at once.

Text analysis. ``title``, ``headings`` and ``text`` use ``lorebot_text``: the standard tokenizer
with lowercase, ASCII folding and the Porter stemmer, CJK characters dropped. That is the
standard analyzer plus folding and stemming, chosen to match the embedded index's FTS5
``porter unicode61 remove_diacritics 2`` so both backends find the same word forms ("restarted"
finds "restarts"); CJK is dropped because the standard tokenizer would index it as single
characters, which match far too much (the sub-field below covers it). Each has a ``cjk``
sub-field analysed by ``lorebot_cjk`` (standard tokenizer, ``cjk_width``, lowercase,
``cjk_bigram``): Chinese, Japanese and Korean runs become overlapping bigrams, the same scheme
``search.text.segment_cjk`` applies for the embedded backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TEXT_ANALYZER = "lorebot_text"
CJK_ANALYZER = "lorebot_cjk"
NO_CJK_FILTER = "lorebot_no_cjk"

# Record kinds, in the `kind` keyword field.
KIND_DOCUMENT = "document"
KIND_CHUNK = "chunk"

VECTOR_FIELD = "vector"

# Title, heading path and text again as one field, each part repeated by its BM25 weight
# (``opensearch_records.combined_text``): BM25 over it scores a chunk as the embedded index's
# FTS5 ``bm25()`` does (weighted term counts over the whole row, one length), which summing
# per-field BM25 scores (``multi_match``) does not: on SciFact test that cost 0.06 nDCG@10
# (bench/opensearch_parity.py). Searched, never returned (left out of ``_source``). Physical
# indexes made before it existed lack it and keep the per-field query until rebuilt.
COMBINED_FIELD = "all_text"

# k-NN engines lorebot maps its vector field with (``IndexLayout.knn_engine``).
KNN_ENGINES = ("faiss", "lucene")

# Fields a hit needs, so searches never ship vectors back.
HIT_FIELDS = ["chunk_id", "doc_id", "source", "title", "text", "headings", "path", "url"]
DOCUMENT_FIELDS = ["doc_id", "source", "content_hash", "path", "url"]


def _text_field() -> dict[str, Any]:
    return {
        "type": "text",
        "analyzer": TEXT_ANALYZER,
        "fields": {"cjk": {"type": "text", "analyzer": CJK_ANALYZER}},
    }


def _keyword() -> dict[str, Any]:
    return {"type": "keyword"}


def _stored_only(kind: str) -> dict[str, Any]:
    # Shown in hits, never searched: no inverted index, no doc values.
    if kind == "keyword":
        return {"type": "keyword", "index": False, "doc_values": False}
    return {"type": kind, "index": False}


# Every field but the vector. `dynamic: strict` makes a misspelt field in a document a mapping
# error at write time instead of a silently unsearchable field.
PROPERTIES: dict[str, Any] = {
    "kind": _keyword(),
    "doc_id": _keyword(),
    "chunk_id": _keyword(),
    "source": _keyword(),
    # The channel scope a chunk may be shown in; reserved for per-channel ACLs (empty today).
    "scope": _keyword(),
    # The transaction that wrote the record: a commit deletes the older records of the
    # documents it touched, and only those (see opensearch.py).
    "write_id": _keyword(),
    "title": _text_field(),
    "headings": _text_field(),
    "text": _text_field(),
    COMBINED_FIELD: _text_field(),
    "ordinal": {"type": "integer"},
    "content_hash": _stored_only("keyword"),
    "path": _stored_only("keyword"),
    "url": _stored_only("keyword"),
    "modified": {"type": "double", "index": False},
    "indexed_at": {"type": "double"},
    "chunks": {"type": "integer"},
}


def _mappings(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "dynamic": "strict",
        # Vectors are searched from the k-NN files and doc values, never read back from
        # `_source`: kept there as JSON they would be the largest part of the index on disk
        # (~8 KB per 384-dimensional vector). Rebuilds read the knowledge sources or the
        # embedded index, not OpenSearch.
        "_source": {"excludes": [VECTOR_FIELD, COMBINED_FIELD]},
        "properties": properties,
    }


@dataclass(frozen=True)
class IndexLayout:
    """Names and index-time parameters of one lorebot index on a cluster."""

    prefix: str = "lorebot"
    shards: int = 1
    replicas: int = 1
    hnsw_m: int = 16
    hnsw_ef_construction: int = 128
    hnsw_ef_search: int = 100
    # The k-NN engine of the vector field: faiss (production: native HNSW, needs the k-NN
    # plugin's JNI libraries, which every OpenSearch distribution ships) or lucene (pure Java;
    # what a node assembled from Maven artifacts can run, see deploy/opensearch-node). Both
    # score an inner product the same way, so `similarity_from_score` serves both.
    knn_engine: str = "faiss"

    def __post_init__(self) -> None:
        if self.knn_engine not in KNN_ENGINES:
            raise ValueError(
                f"k-NN engine {self.knn_engine!r} is not one of {', '.join(KNN_ENGINES)}"
            )
        # OpenSearch index names: lowercase, no spaces or \/*?"<>|,# and not starting with _-+.
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.prefix):
            raise ValueError(
                f"OpenSearch index prefix {self.prefix!r} is not a valid index name: use "
                "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
            )

    @property
    def alias(self) -> str:
        """The read (and write) alias every query names."""
        return self.prefix

    @property
    def template_name(self) -> str:
        return self.prefix

    @property
    def pattern(self) -> str:
        return f"{self.prefix}-v*"

    def physical(self, version: int) -> str:
        """The name of physical index number ``version``."""
        return f"{self.prefix}-v{version}"

    def version_of(self, name: str) -> int | None:
        """The number of a physical index name of this layout, else None."""
        match = re.fullmatch(re.escape(self.prefix) + r"-v(\d+)", name)
        return int(match.group(1)) if match else None

    # ---- request bodies ----------------------------------------------------------------------

    def index_settings(self, *, replicas: int | None = None) -> dict[str, Any]:
        return {
            "index": {
                "number_of_shards": self.shards,
                "number_of_replicas": self.replicas if replicas is None else replicas,
                # Searches see a write only after an explicit refresh, which lorebot issues at
                # the end of a commit: readers see whole transactions, not the bulk requests
                # of one half-way through (per shard; see the opensearch_commit docstring).
                "refresh_interval": "-1",
                "knn": True,
            },
            "analysis": {
                "filter": {
                    # CJK characters are left to the `cjk` sub-fields: as single characters
                    # here they would match any text sharing one ideograph ("京" of 東京 and
                    # 北京), which the embedded backend's bigrams never do.
                    NO_CJK_FILTER: {
                        "type": "keep_types",
                        "mode": "exclude",
                        "types": ["<IDEOGRAPHIC>", "<HIRAGANA>", "<KATAKANA>", "<HANGUL>"],
                    }
                },
                "analyzer": {
                    TEXT_ANALYZER: {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": [NO_CJK_FILTER, "lowercase", "asciifolding", "porter_stem"],
                    },
                    CJK_ANALYZER: {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["cjk_width", "lowercase", "cjk_bigram"],
                    },
                }
            },
        }

    def template_body(self) -> dict[str, Any]:
        """The ``_index_template`` body: settings and mappings of every physical index."""
        return {
            "index_patterns": [self.pattern],
            # Above the built-in templates, so ours decides for lorebot-v* names.
            "priority": 100,
            "template": {
                "settings": self.index_settings(),
                "mappings": _mappings(dict(PROPERTIES)),
            },
            "_meta": {"managed_by": "lorebot"},
        }

    def vector_mapping(self, dim: int) -> dict[str, Any]:
        """The ``knn_vector`` field: HNSW, inner product (vectors are normalised).

        faiss takes ``ef_search`` in the mapping; the lucene engine refuses it there ("Unknown
        parameter 'ef_search'") and takes it per query instead (``knn_method_parameters``).
        """
        parameters: dict[str, Any] = {"m": self.hnsw_m,
                                      "ef_construction": self.hnsw_ef_construction}
        if self.knn_engine == "faiss":
            parameters["ef_search"] = self.hnsw_ef_search
        return {
            "type": "knn_vector",
            "dimension": dim,
            "method": {
                "name": "hnsw",
                "engine": self.knn_engine,
                "space_type": "innerproduct",
                "parameters": parameters,
            },
        }

    def knn_method_parameters(self) -> dict[str, Any] | None:
        """``method_parameters`` for a ``knn`` query clause, or None when the mapping has them.

        The lucene engine reads ``ef_search`` only from the query (OpenSearch 2.16+); without
        it Lucene searches with a candidate list of ``k``, a weaker search than faiss's.
        """
        if self.knn_engine == "faiss":
            return None
        return {"ef_search": self.hnsw_ef_search}

    def create_body(
        self, dim: int | None, *, alias: bool, replicas: int | None = None
    ) -> dict[str, Any]:
        """The body creating one physical index (the template supplies the rest).

        Settings and fields are repeated here rather than left to the template alone, so an
        index is right even when someone edited or deleted the template. ``alias`` puts the
        read alias on it in the same request (the very first index).
        """
        body: dict[str, Any] = {
            "settings": self.index_settings(replicas=replicas),
            "mappings": _mappings(dict(PROPERTIES)),
        }
        if dim is not None:
            body["mappings"]["properties"][VECTOR_FIELD] = self.vector_mapping(dim)
        if alias:
            body["aliases"] = {self.alias: {}}
        return body


def similarity_from_score(score: float) -> float:
    """The inner product of query and chunk from an ``innerproduct`` k-NN score (faiss or lucene).

    OpenSearch turns an inner product ``ip`` into a positive score: ``1 + ip`` when ``ip >= 0``,
    else ``1 / (1 - ip)``; this inverts it, so hits carry the cosine similarity (vectors are
    normalised), as the embedded backend's do.
    """
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
