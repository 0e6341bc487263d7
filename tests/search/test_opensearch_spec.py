"""Every request body the OpenSearch backend builds is valid under OpenSearch's API specification.

The validator (``tests/support/opensearch_spec.py``) forbids keys the spec does not declare, so
these tests also prove it catches misspellings, and that this strictness rejects nothing the
published spec accepts (checked on the spec's own example requests, which were run against real
clusters). The same validator checks every request sent in the osmem and real-cluster tests.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import yaml
from opensearchpy.helpers import expand_action

from search.index.opensearch_mapping import PROPERTIES, VECTOR_FIELD, IndexLayout
from search.index.opensearch_queries import (
    bm25_body,
    documents_body,
    hybrid_body,
    knn_body,
    msearch_lines,
    pipeline_body,
    query_text,
    source_stats_body,
)
from search.index.opensearch_records import (
    chunk_actions,
    doc_records_query,
    document_action,
    source_records_query,
    stale_records_query,
)
from search.models import Chunk, Document
from tests.support.opensearch_spec import (
    SPEC_DIR,
    RequestValidator,
    SpecViolation,
    load_spec,
    mapping_document_checker,
    spec_available,
)

pytestmark = pytest.mark.skipif(
    not spec_available(), reason="the OpenSearch API spec is not in ../shared/opensearch-api-spec"
)

LAYOUT = IndexLayout(prefix="lorebot", shards=2, replicas=1)
VECTOR = np.linspace(-1, 1, 8, dtype=np.float32)


@pytest.fixture
def validator() -> RequestValidator:
    return RequestValidator(load_spec(), check_document=mapping_document_checker(PROPERTIES))


def ndjson(lines) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def bulk_body(actions) -> str:
    """The NDJSON ``async_bulk`` sends for these actions."""
    lines = []
    for action in actions:
        header, data = expand_action(copy.deepcopy(action))
        lines.append(header)
        if data is not None:
            lines.append(data)
    return ndjson(lines)


# ---- every body lorebot sends ------------------------------------------------------------------


def _bodies():
    text = query_text("How do I deploy 服务器 safely?")
    words_only = query_text("deploy script")
    cjk_only = query_text("東京都")
    document = Document("d1", "wiki", "Deploy guide", "text", "hash", path="a.md", url=None,
                        modified=1.5)
    chunks = [Chunk("d1#0", "d1", 0, "Run the script.", "Deploy guide", ("Ops", "Deploy"))]
    return [
        ("PUT", "/_index_template/lorebot", LAYOUT.template_body()),
        ("PUT", "/lorebot-v1", LAYOUT.create_body(384, alias=True)),
        ("PUT", "/lorebot-v2", LAYOUT.create_body(None, alias=False, replicas=0)),
        ("PUT", "/lorebot-v1/_mapping", {"properties": {VECTOR_FIELD: LAYOUT.vector_mapping(8)}}),
        ("PUT", "/lorebot-v2/_settings", {"index": {"number_of_replicas": 1}}),
        ("POST", "/_aliases", {"actions": [
            {"remove": {"index": "lorebot-v1", "alias": "lorebot"}},
            {"add": {"index": "lorebot-v2", "alias": "lorebot"}},
        ]}),
        ("POST", "/lorebot/_search", bm25_body(text, 100, None)),
        ("POST", "/lorebot/_search", bm25_body(words_only, 5, ["wiki", "drive"])),
        ("POST", "/lorebot/_search", bm25_body(cjk_only, 5, [], weights=(0, 1, 1))),
        ("POST", "/lorebot/_search", knn_body(VECTOR, 10, None)),
        ("POST", "/lorebot/_search", knn_body(VECTOR, 10, ["wiki"])),
        ("POST", "/lorebot/_search", documents_body(None, 1000, None)),
        ("POST", "/lorebot/_search", documents_body("wiki", 1000, "d1")),
        ("POST", "/lorebot/_search", source_stats_body()),
        ("POST", "/lorebot/_count", {"query": {"term": {"kind": "chunk"}}}),
        ("POST", "/_msearch", ndjson(msearch_lines(
            "lorebot", bm25_body(text, 50, ["wiki"]), knn_body(VECTOR, 50, ["wiki"])))),
        ("POST", "/lorebot-v1/_delete_by_query", stale_records_query(["d1", "d2"], "w1")),
        ("POST", "/lorebot-v1/_delete_by_query", source_records_query("wiki", "w1")),
        ("POST", "/lorebot-v1/_delete_by_query", doc_records_query(["d1"])),
        ("PUT", "/_search/pipeline/lorebot-hybrid", pipeline_body("rrf", rrf_k=60)),
        ("PUT", "/_search/pipeline/lorebot-hybrid", pipeline_body("min_max", weights=(1, 3))),
        ("POST", "/lorebot/_search", hybrid_body(text, VECTOR, 50, ["wiki"])),
        ("POST", "/_bulk", bulk_body(
            chunk_actions("lorebot-v1", document, chunks, VECTOR[None, :], "w1")
            + [document_action("lorebot-v1", document, 1, "w1", 1700000000.0)])),
    ]


@pytest.mark.parametrize("method,path,body", _bodies(),
                         ids=lambda v: v if isinstance(v, str) and v.startswith(("/", "P")) else "")
def test_every_request_body_lorebot_builds_is_valid(validator, method, path, body):
    validator.check(method, path, {}, body)


def test_the_query_parameters_lorebot_sends_are_valid(validator):
    validator.check("POST", "/lorebot-v1/_delete_by_query", {"conflicts": "proceed"},
                    doc_records_query(["d1"]))
    validator.check("GET", "/lorebot-v*/_alias", {"expand_wildcards": "all"})
    validator.check("POST", "/lorebot-v1/_refresh", {})
    validator.check("POST", "/lorebot/_search", {"search_pipeline": "lorebot-hybrid"},
                    hybrid_body(query_text("deploy"), VECTOR, 10, None))


# ---- the validator catches misspellings ----------------------------------------------------------


def _misspelt(path: str, key: str, replacement: str, body: dict) -> dict:
    """``body`` with the key ``key`` at JSON path ``path`` renamed to ``replacement``."""
    body = copy.deepcopy(body)
    node = body
    for part in path.split("/") if path else []:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[replacement] = node.pop(key)
    return body


BM25 = bm25_body(query_text("deploy script"), 10, ["wiki"])
KNN = knn_body(VECTOR, 10, ["wiki"])
CREATE = LAYOUT.create_body(8, alias=True)


@pytest.mark.parametrize(
    "method,path,body,expected",
    [
        ("POST", "/lorebot/_search",
         _misspelt("query/bool/should/0", "multi_match", "mulit_match", BM25), "mulit_match"),
        ("POST", "/lorebot/_search",
         {"query": {"multi_match": {"query": "x", "fields": ["text"], "fuzzyness": "AUTO"}}},
         "fuzzyness"),
        ("POST", "/lorebot/_search", _misspelt("query/bool", "filter", "filters", BM25), "filters"),
        ("POST", "/lorebot/_search",
         _misspelt("query/knn/vector", "filter", "filtr", KNN), "filtr"),
        ("POST", "/lorebot/_search", _misspelt("", "track_total_hits", "track_total", BM25),
         "track_total"),
        ("PUT", "/lorebot-v1",
         _misspelt("mappings/properties/text", "analyzer", "anlyzer", CREATE), "anlyzer"),
        ("PUT", "/lorebot-v1",
         _misspelt("mappings/properties/vector/method", "engine", "engin", CREATE), "engin"),
        ("PUT", "/lorebot-v1",
         _misspelt("settings/analysis/analyzer/lorebot_cjk", "tokenizer", "tokeniser", CREATE),
         "tokeniser"),
        ("PUT", "/lorebot-v1",
         _misspelt("settings/index", "number_of_shards", "number_of_shard", CREATE),
         "number_of_shard"),
        ("PUT", "/_index_template/lorebot",
         _misspelt("", "index_patterns", "index_pattern", LAYOUT.template_body()),
         "index_pattern"),
        ("POST", "/_aliases",
         {"actions": [{"remvoe": {"index": "a", "alias": "b"}}, {"add": {"index": "c",
                                                                       "alias": "b"}}]},
         "remvoe"),
    ],
    ids=["mulit_match", "fuzzyness", "bool-filters", "knn-filtr", "track_total", "anlyzer",
         "engin", "tokeniser", "number_of_shard", "index_pattern", "remvoe"],
)
def test_a_misspelt_key_is_caught(validator, method, path, body, expected):
    with pytest.raises(SpecViolation, match=re.escape(expected)):
        validator.check(method, path, {}, body)


def test_a_misspelt_msearch_header_and_bulk_action_are_caught(validator):
    lines = msearch_lines("lorebot", BM25)
    lines[0] = {"indx": "lorebot"}
    with pytest.raises(SpecViolation, match="indx"):
        validator.check("POST", "/_msearch", {}, ndjson(lines))
    with pytest.raises(SpecViolation, match="_idx"):
        validator.check("POST", "/_bulk", {}, ndjson([{"index": {"_idx": "x", "_id": "1"}},
                                                       {"kind": "chunk"}]))
    with pytest.raises(SpecViolation, match="fields not in the mapping"):
        validator.check("POST", "/_bulk", {}, ndjson([{"index": {"_index": "x", "_id": "1"}},
                                                       {"knd": "chunk"}]))


def test_an_unknown_query_parameter_or_bad_value_is_caught(validator):
    with pytest.raises(SpecViolation, match="refrsh"):
        validator.check("POST", "/_bulk", {"refrsh": "true"}, ndjson([{"delete": {"_id": "1"}}]))
    with pytest.raises(SpecViolation, match="conflicts"):
        validator.check("POST", "/x/_delete_by_query", {"conflicts": "ignore"},
                        doc_records_query(["d"]))


def test_a_wrong_knn_engine_or_space_is_caught(validator):
    # The spec leaves engine and space_type free strings; the validator adds the known values.
    body = copy.deepcopy(CREATE)
    body["mappings"]["properties"]["vector"]["method"]["engine"] = "fiass"
    with pytest.raises(SpecViolation, match="fiass"):
        validator.check("PUT", "/lorebot-v1", {}, body)
    body = copy.deepcopy(CREATE)
    body["mappings"]["properties"]["vector"]["method"]["space_type"] = "inner_product"
    with pytest.raises(SpecViolation, match="inner_product"):
        validator.check("PUT", "/lorebot-v1", {}, body)


def test_an_unknown_endpoint_is_caught(validator):
    with pytest.raises(SpecViolation, match="no operation"):
        validator.check("POST", "/lorebot/_serach", {}, BM25)


# ---- strictness rejects nothing the published spec accepts --------------------------------------


def _story_requests():
    """(story, method, path, params, body) of every request the spec's test stories send with
    a success status (they were run against real clusters)."""
    for file in sorted((SPEC_DIR.parent / "tests").rglob("*.yaml")):
        story = yaml.safe_load(file.read_text())
        for section in ("prologues", "chapters", "epilogues"):
            for step in story.get(section) or []:
                status = (step.get("response") or {}).get("status", step.get("status", [200]))
                if any(int(s) >= 400 for s in (status if isinstance(status, list) else [status])):
                    continue
                params = dict(step.get("parameters") or {})

                def fill(match, params=params):
                    value = params.pop(match.group(1), "x")
                    return ",".join(map(str, value)) if isinstance(value, list) else str(value)

                path = re.sub(r"\{(\w+)\}", fill, step["path"])
                query = {k: json.dumps(v) if isinstance(v, (bool, list, dict)) else str(v)
                         for k, v in params.items()}
                body = (step.get("request") or {}).get("payload")
                if isinstance(body, list):
                    body = ndjson(body)
                methods = step["method"] if isinstance(step["method"], list) else [step["method"]]
                for method in methods:
                    yield file.relative_to(SPEC_DIR.parent).as_posix(), method, path, query, body


def test_strictness_rejects_nothing_the_published_spec_accepts():
    strict, published = RequestValidator(load_spec()), RequestValidator(load_spec(strict=False))
    checked, rejected = 0, []
    for story, method, path, query, body in _story_requests():
        checked += 1
        try:
            strict.check(method, path, query, body)
        except SpecViolation as exc:
            rejected.append((story, method, path, query, body, str(exc)))
    assert checked > 400
    # Whatever the strict spec rejects, the published one rejects too: mismatches between a
    # story and the spec (an integer `_id`, `term_vector: true`, an `ml_inference` processor the
    # spec lacks), not strictness. (The reverse happens: where unknown keys made a `oneOf`
    # ambiguous, e.g. `{"year": "asc"}` matching two sort forms, strict validation accepts.)
    wrongly_rejected = []
    for story, method, path, query, body, reason in rejected:
        try:
            published.check(method, path, query, body)
            wrongly_rejected.append(f"{story}: {reason}")
        except SpecViolation:
            pass
    assert wrongly_rejected == []
    assert len(rejected) <= 5
