"""Validate OpenSearch requests against OpenSearch's own API specification, strictly.

The specification (``../shared/opensearch-api-spec/spec``: OpenAPI 3.1, JSON Schema 2020-12,
YAML with cross-file ``$ref``s) describes every endpoint: its path, query parameters and request
body. ``RequestValidator.check(method, path, params, body)`` finds the operation a request
targets and validates the query parameter names and values and the body against it.

Strictness. The spec leaves most objects open: a misspelt key (``mulit_match``, ``fuzzyness``)
passes a plain validator. While loading, every object schema that declares properties and says
nothing about extra ones gets ``unevaluatedProperties: false``. That keyword, unlike
``additionalProperties``, sees the properties evaluated by ``allOf``/``anyOf``/``oneOf`` and
``$ref`` subschemas of the same object, so ``MultiMatchQuery = allOf[QueryBase, {…}]`` accepts
``boost`` and ``query`` and rejects anything else. To keep that true, a schema used as a part of
another (an ``allOf`` member, or a ``$ref`` next to ``properties``) is left open at its top
level, and a component referenced that way is referenced through an open copy
(``Name__open``), so the component stays strict wherever it is used on its own.

Two request bodies are validated per line, not as the spec's loose ``anyOf`` arrays: ``_bulk``
(action lines must be an ``OperationContainer``; source lines are checked by a caller-supplied
function, as the spec says nothing about documents) and ``_msearch`` (header, body, header, …).

Where the spec itself is loose and lorebot depends on the value, a few extra checks apply
(the README of the spec copy lists these gaps): k-NN ``engine``, ``space_type`` and method
parameter names, and index setting names (the spec admits any custom setting).

Operations with a ``discriminator`` (mapping field types, analyzers, token filters) are looked
up by their discriminating property instead of trying all ~50 ``oneOf`` branches: the same
verdicts, ten times faster.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = Path(
    os.environ.get("OPENSEARCH_API_SPEC", ROOT.parent / "shared" / "opensearch-api-spec")
) / "spec"

_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_SINGLE = ("if", "then", "else")
_OTHER_LOCATION_MAPS = ("properties", "patternProperties", "dependentSchemas")
_OTHER_LOCATION_SINGLE = (
    "additionalProperties", "unevaluatedProperties", "items", "contains", "propertyNames",
    "unevaluatedItems",
)
_OPEN_SUFFIX = "__open"

KNN_ENGINES = {"faiss", "lucene", "nmslib"}
KNN_SPACES = {"l2", "l1", "linf", "cosinesimil", "innerproduct", "hamming"}
KNN_METHOD_PARAMETERS = {"m", "ef_construction", "ef_search", "encoder", "nlist", "nprobes"}


CLIENT_ONLY_PARAMS = {"ignore", "request_timeout"}


class SpecViolation(AssertionError):
    """A request does not match the OpenSearch API specification."""


def spec_available() -> bool:
    return (SPEC_DIR / "namespaces").is_dir()


# --------------------------------------------------------------------------------------------
# Loading and making the schemas strict.
# --------------------------------------------------------------------------------------------


def _schema_roots(doc: dict) -> Iterable[tuple[str, ...]]:
    """Key paths of every top-level schema position in one spec file."""
    components = doc.get("components") or {}
    for name in components.get("schemas") or {}:
        yield ("components", "schemas", name)
    for name, body in (components.get("requestBodies") or {}).items():
        for media, content in (body.get("content") or {}).items():
            if "schema" in content:
                yield ("components", "requestBodies", name, "content", media, "schema")
    for name, param in (components.get("parameters") or {}).items():
        if isinstance(param, dict) and "schema" in param:
            yield ("components", "parameters", name, "schema")


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _resolve(docs: dict[str, dict], base: str, ref: str) -> tuple[Any, str]:
    """The schema ``ref`` names (relative to file ``base``) and the file it is in."""
    file_uri, _, pointer = urljoin(base, ref).partition("#")
    node: Any = docs[file_uri]
    for part in pointer.lstrip("/").split("/") if pointer else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, file_uri


def _pinned_values(docs: dict[str, dict], node: Any, uri: str, prop: str) -> list[Any] | None:
    """The values a schema allows for property ``prop`` (its enum or const), if it pins them."""
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        target, target_uri = _resolve(docs, uri, node["$ref"])
        found = _pinned_values(docs, target, target_uri, prop)
        if found is not None:
            return found
    spec = (node.get("properties") or {}).get(prop)
    if isinstance(spec, dict):
        if "enum" in spec:
            return list(spec["enum"])
        if "const" in spec:
            return [spec["const"]]
    for part in node.get("allOf", []):
        found = _pinned_values(docs, part, uri, prop)
        if found is not None:
            return found
    return None


def _apply_discriminators(docs: dict[str, dict]) -> None:
    """Turn ``oneOf`` + ``discriminator`` into a lookup by the discriminating property.

    ``Property`` (a mapping field) is a ``oneOf`` of ~50 field types, and a text field's
    ``fields`` are Properties again: plain ``oneOf`` tries every branch at every level (over a
    second per mapping). The discriminator says which branch applies, so each value gets an
    ``if``/``then`` and any other value is refused: the same verdicts, found directly.
    """
    for uri, doc in docs.items():
        schemas = (doc.get("components") or {}).get("schemas") or {}
        for name, node in list(schemas.items()):
            disc = node.get("discriminator") if isinstance(node, dict) else None
            branches = node.get("oneOf") if isinstance(node, dict) else None
            if not disc or not isinstance(branches, list):
                continue
            prop = disc["propertyName"]
            by_value: dict[Any, str] = {}
            for branch in branches:
                values = _pinned_values(docs, branch, uri, prop) if "$ref" in branch else None
                if not values:
                    by_value = {}
                    break
                for value in values:
                    by_value.setdefault(value, branch["$ref"])
            if not by_value:
                continue
            parts: list[dict] = [
                {"if": {"properties": {prop: {"const": value}}, "required": [prop]},
                 "then": {"$ref": ref}}
                for value, ref in by_value.items()
            ]
            parts.append({"properties": {prop: {"enum": list(by_value)}}})
            default = disc.get("x-default")
            rewritten = {k: v for k, v in node.items() if k != "oneOf"}
            if default in by_value:
                parts.append({"if": {"not": {"required": [prop]}},
                              "then": {"$ref": by_value[default]}})
            else:
                rewritten["required"] = sorted(set(node.get("required", [])) | {prop})
            rewritten["allOf"] = list(node.get("allOf", [])) + parts
            schemas[name] = rewritten


class _Strictifier:
    """Rewrites the loaded spec files in place (see the module docstring)."""

    def __init__(self, docs: dict[str, dict]):
        self.docs = docs  # uri -> document, rewritten
        self.originals = copy.deepcopy(docs)  # every walk starts from untouched schemas
        self.pending: list[tuple[str, str]] = []  # (uri, component) needing an open copy
        self.made: set[tuple[str, str]] = set()

    def run(self) -> None:
        for uri, original in self.originals.items():
            for path in _schema_roots(original):
                _get(self.docs[uri], path[:-1])[path[-1]] = self.walk(
                    _get(original, path), uri, composed=False
                )
        while self.pending:
            uri, name = self.pending.pop()
            original = self.originals[uri]["components"]["schemas"][name]
            self.docs[uri]["components"]["schemas"][name + _OPEN_SUFFIX] = self.walk(
                original, uri, composed=True
            )

    def open_ref(self, ref: str, base: str) -> str:
        """The reference to the open copy of a component (created on demand)."""
        file_uri, _, pointer = urljoin(base, ref).partition("#")
        match = re.fullmatch(r"/components/schemas/([^/]+)", pointer)
        if not match or file_uri not in self.docs:
            return ref
        if (file_uri, match.group(1)) not in self.made:
            self.made.add((file_uri, match.group(1)))
            self.pending.append((file_uri, match.group(1)))
        return ref + _OPEN_SUFFIX

    def walk(self, node: Any, uri: str, *, composed: bool) -> Any:
        """A copy of ``node`` with strictness added; ``composed``: a part of another schema."""
        if not isinstance(node, dict):
            return node
        node = dict(node)
        decided = any(
            k in node
            for k in ("additionalProperties", "unevaluatedProperties", "patternProperties")
        )
        strict = not composed and not decided and ("properties" in node or "allOf" in node)
        # In-place subschemas (allOf/anyOf/oneOf/if/then/else/$ref) evaluate this same object:
        # when this node is strict, or itself a part of a strict one, they must stay open, or
        # each would reject the keys the others declare. A bare oneOf/anyOf on a node that is
        # neither leaves each branch to stand on its own, strict.
        parts = strict or composed
        for key in _IN_PLACE_LISTS:
            if isinstance(node.get(key), list):
                node[key] = [self.walk(child, uri, composed=parts) for child in node[key]]
        for key in _IN_PLACE_SINGLE:
            if key in node:
                node[key] = self.walk(node[key], uri, composed=parts)
        if "$ref" in node and parts:
            node["$ref"] = self.open_ref(node["$ref"], uri)
        # Subschemas of other instance locations (a property's value, array items) start over.
        for key in _OTHER_LOCATION_MAPS:
            if isinstance(node.get(key), dict):
                node[key] = {k: self.walk(v, uri, composed=False) for k, v in node[key].items()}
        for key in _OTHER_LOCATION_SINGLE:
            if isinstance(node.get(key), dict):
                node[key] = self.walk(node[key], uri, composed=False)
        if isinstance(node.get("prefixItems"), list):
            node["prefixItems"] = [self.walk(v, uri, composed=False) for v in node["prefixItems"]]
        if strict:
            node["unevaluatedProperties"] = False
        return node


@dataclass
class _Operation:
    id: str
    uri: str  # the namespace file
    body_ref: str | None  # absolute reference to the request body object, or None
    body_required: bool
    query_params: dict[str, str]  # name -> absolute reference to the parameter's schema


@dataclass
class Spec:
    """The loaded, strict specification: a schema registry and the operations by path."""

    registry: Registry
    docs: dict[str, dict]
    routes: list[tuple[re.Pattern, int, dict[str, _Operation]]] = field(default_factory=list)
    global_params: dict[str, str] = field(default_factory=dict)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)
    _verdicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def validator(self, ref: str) -> Draft202012Validator:
        if ref not in self._validators:
            self._validators[ref] = Draft202012Validator({"$ref": ref}, registry=self.registry)
        return self._validators[ref]

    def schema_ref(self, file: str, pointer: str) -> str:
        return f"{(SPEC_DIR / file).as_uri()}#{pointer}"

    def errors(self, ref: str, instance: Any) -> list[str]:
        """Readable messages for every violation of the schema at ``ref``; empty if valid.

        Verdicts are remembered per (schema, body): the same aggregation body is sent many
        times, and nested aggregations take a second or two to validate.
        """
        key = (ref, json.dumps(instance, sort_keys=True, default=str))
        if key not in self._verdicts:
            found = sorted(self.validator(ref).iter_errors(instance), key=lambda e: list(e.path))
            self._verdicts[key] = [_describe(e) for e in found]
        return list(self._verdicts[key])


def _describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    leaves = [error]
    while leaves and leaves[0].context:
        # For anyOf/oneOf, name the branch that came closest (the deepest error).
        leaves = sorted(leaves[0].context, key=lambda e: -len(e.absolute_path))
    leaf = leaves[0]
    leaf_where = "/".join(str(p) for p in leaf.absolute_path) or "(root)"
    return f"at {where}: {error.message[:200]}" + (
        f" [closest: at {leaf_where}: {leaf.message[:200]}]" if leaf is not error else ""
    )


@lru_cache(maxsize=2)
def load_spec(strict: bool = True) -> Spec:
    """Load and prepare the specification once per process (about two seconds).

    ``strict=False`` loads it as published (open objects), to compare verdicts with.
    """
    docs: dict[str, dict] = {}
    for path in sorted(SPEC_DIR.rglob("*.yaml")):
        with path.open() as f:
            docs[path.as_uri()] = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if strict:
        _apply_discriminators(docs)
        _Strictifier(docs).run()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT202012))
        for uri, doc in docs.items()
    )
    spec = Spec(registry=registry, docs=docs)
    global_uri = (SPEC_DIR / "_global_parameters.yaml").as_uri()
    for name, param in docs[global_uri]["components"]["parameters"].items():
        spec.global_params[param["name"]] = f"{global_uri}#/components/parameters/{name}/schema"
    for path in sorted((SPEC_DIR / "namespaces").glob("*.yaml")):
        uri = path.as_uri()
        doc = docs[uri]
        for template, item in (doc.get("paths") or {}).items():
            operations = {}
            for method, op in item.items():
                if not isinstance(op, dict) or "operationId" not in op:
                    continue
                operations[method.upper()] = _operation(doc, uri, op)
            pattern = re.compile(
                "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            )
            literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
            spec.routes.append((pattern, literals, operations))
    # Most literal segments first: `/_index_template/{name}` before `/{index}/{id}`.
    spec.routes.sort(key=lambda r: -r[1])
    return spec


def _resolve_local(doc: dict, ref: str) -> tuple[dict, str]:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, ref[1:]


def _operation(doc: dict, uri: str, op: dict) -> _Operation:
    body_ref, required = None, False
    if "requestBody" in op:
        body, pointer = _resolve_local(doc, op["requestBody"]["$ref"])
        body_ref, required = f"{uri}#{pointer}", bool(body.get("required"))
    params: dict[str, str] = {}
    for ref in op.get("parameters", []):
        param, pointer = _resolve_local(doc, ref["$ref"])
        if param.get("in") == "query":
            params[param["name"]] = f"{uri}#{pointer}/schema"
    return _Operation(op["operationId"], uri, body_ref, required, params)


# --------------------------------------------------------------------------------------------
# Checking requests.
# --------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    body: Any
    operation: str = ""


def _json_pointer_escape(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def _coerce(value: Any) -> list[Any]:
    """Ways a query-string value may have been meant (the client sends everything as text)."""
    options = [value]
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            options.append(value.lower() == "true")
        try:
            options.append(json.loads(value))
        except ValueError:
            pass
        if "," in value:
            options.append(value.split(","))
    return options


class RequestValidator:
    """Checks requests against the spec; remembers every request and every violation."""

    def __init__(self, spec: Spec | None = None, *,
                 check_document: Callable[[dict], list[str]] | None = None):
        self.spec = spec or load_spec()
        self.check_document = check_document
        self.requests: list[Request] = []
        self.violations: list[str] = []

    def check(self, method: str, url: str, params: dict | None = None, body: Any = None) -> Request:
        """Validate one request; raises ``SpecViolation`` (and records it) when it is invalid."""
        path = "/" + unquote(urlsplit(url).path).lstrip("/")
        # `ignore` and `request_timeout` are the client's own; it never sends them.
        params = {
            k: v.decode("utf-8") if isinstance(v, bytes) else v
            for k, v in (params or {}).items()
            if k not in CLIENT_ONLY_PARAMS
        }
        request = Request(method.upper(), path, params, _decode(body))
        self.requests.append(request)
        problems = self.problems(request)
        if problems:
            message = f"{request.method} {path} ({request.operation or 'no operation'}): " + \
                "; ".join(problems)
            self.violations.append(message)
            raise SpecViolation(message)
        return request

    def problems(self, request: Request) -> list[str]:
        operation = self._operation(request.method, request.path)
        if operation is None:
            return [f"no operation in the spec for {request.method} {request.path}"]
        request.operation = operation.id
        problems = []
        for name, value in request.params.items():
            ref = operation.query_params.get(name) or self.spec.global_params.get(name)
            if ref is None:
                problems.append(f"unknown query parameter {name!r}")
            elif all(self.spec.errors(ref, v) for v in _coerce(value)):
                problems.append(f"query parameter {name}={value!r}: "
                                + "; ".join(self.spec.errors(ref, value)))
        body = request.body
        if body is None:
            if operation.body_required:
                problems.append("the request needs a body")
            return problems
        if operation.body_ref is None:
            return problems + ["this endpoint takes no body"]
        group = operation.id.rsplit(".", 1)[0]
        if group == "bulk":
            return problems + self._bulk(body)
        if group == "msearch":
            return problems + self._msearch(body)
        media = "application/x-ndjson" if isinstance(body, list) else "application/json"
        ref = f"{operation.body_ref}/content/{_json_pointer_escape(media)}/schema"
        problems += self.spec.errors(ref, body)
        problems += knn_mapping_problems(body)
        problems += self._settings_problems(group, body)
        return problems

    def _settings_problems(self, group: str, body: Any) -> list[str]:
        """Index settings must be ones the spec names: it allows any custom setting (plugins
        add their own), so a misspelt one would pass; lorebot sets no custom settings."""
        if not isinstance(body, dict):
            return []
        settings = {
            "indices.create": lambda: body.get("settings"),
            "indices.put_index_template": lambda: (body.get("template") or {}).get("settings"),
            "indices.put_settings": lambda: body,
        }.get(group, lambda: None)()
        if not isinstance(settings, dict):
            return []
        uri = (SPEC_DIR / "schemas" / "indices._common.yaml").as_uri()
        known = set(self.spec.docs[uri]["components"]["schemas"]["IndexSettings"]["properties"])
        # Settings may be nested (`index: {…}`) or flat (`index.number_of_shards`).
        problems = [
            f"unknown index setting {k!r}"
            for k in settings
            if k not in known and k.removeprefix("index.") not in known
        ]
        if isinstance(settings.get("index"), dict):
            problems += [
                f"unknown index setting 'index.{k}'" for k in settings["index"] if k not in known
            ]
        return problems

    def _operation(self, method: str, path: str) -> _Operation | None:
        for pattern, _, operations in self.spec.routes:
            if pattern.match(path) and method in operations:
                return operations[method]
        return None

    def _bulk(self, lines: Any) -> list[str]:
        if not isinstance(lines, list):
            return ["a bulk body is newline-delimited JSON"]
        ref = self.spec.schema_ref(
            "schemas/_core.bulk.yaml", "/components/schemas/OperationContainer"
        )
        problems, i = [], 0
        while i < len(lines):
            action = lines[i]
            problems += [f"line {i + 1}: {p}" for p in self.spec.errors(ref, action)]
            op = next(iter(action), None) if isinstance(action, dict) else None
            if op in ("index", "create", "update"):
                if i + 1 >= len(lines):
                    problems.append(f"line {i + 1}: {op} action without a document line")
                    break
                if self.check_document is not None and op != "update":
                    problems += [f"line {i + 2}: {p}" for p in self.check_document(lines[i + 1])]
                i += 2
            else:
                i += 1
        return problems

    def _msearch(self, lines: Any) -> list[str]:
        if not isinstance(lines, list) or len(lines) % 2:
            return ["an msearch body is header/body pairs of newline-delimited JSON"]
        header = self.spec.schema_ref("schemas/_core.msearch.yaml",
                                      "/components/schemas/MultisearchHeader")
        body = self.spec.schema_ref("schemas/_core.msearch.yaml",
                                    "/components/schemas/MultisearchBody")
        problems = []
        for i, line in enumerate(lines):
            ref = header if i % 2 == 0 else body
            problems += [f"line {i + 1}: {p}" for p in self.spec.errors(ref, line)]
        return problems

    # ---- for tests ----------------------------------------------------------------------------

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]

    def assert_clean(self) -> None:
        assert not self.violations, "requests that break the OpenSearch API spec:\n" + \
            "\n".join(self.violations)


def _decode(body: Any) -> Any:
    """A request body as JSON values: a dict, or a list of lines for NDJSON bodies."""
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    if isinstance(body, str):
        lines = [line for line in body.split("\n") if line.strip()]
        if len(lines) == 1 and not body.rstrip("\n").count("\n"):
            decoded = json.loads(lines[0])
            return [decoded] if body.endswith("\n") else decoded
        return [json.loads(line) for line in lines]
    if isinstance(body, (list, tuple)):
        return [json.loads(x) if isinstance(x, str) else x for x in body]
    return body


def knn_mapping_problems(body: Any) -> list[str]:
    """Checks the spec cannot make: k-NN engine, space type and method parameter names."""
    problems: list[str] = []

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "knn_vector":
                method = node.get("method") or {}
                if "engine" in method and method["engine"] not in KNN_ENGINES:
                    problems.append(f"{where}: k-NN engine {method.get('engine')!r}")
                space = method.get("space_type", node.get("space_type"))
                if space is not None and space not in KNN_SPACES:
                    problems.append(f"{where}: k-NN space_type {space!r}")
                unknown = set(method.get("parameters") or {}) - KNN_METHOD_PARAMETERS
                if unknown:
                    problems.append(f"{where}: unknown k-NN method parameters {sorted(unknown)}")
            for key, value in node.items():
                visit(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{where}/{i}")

    visit(body, "")
    return problems


def mapping_document_checker(properties: dict[str, Any]) -> Callable[[dict], list[str]]:
    """Checks a bulk source line against lorebot's own mapping (the spec allows any object)."""
    from search.index.opensearch_mapping import VECTOR_FIELD

    known = set(properties) | {VECTOR_FIELD}

    def check(document: dict) -> list[str]:
        if not isinstance(document, dict):
            return ["a document must be a JSON object"]
        unknown = sorted(set(document) - known)
        return [f"fields not in the mapping: {unknown}"] if unknown else []

    return check
