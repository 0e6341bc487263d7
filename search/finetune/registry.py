"""The model registry: every fine-tuned candidate, its record, and which one is active per kind.

Layout under ``<data_dir>/models/``::

    registry.json        {"candidates": [record, ...], "active": {kind: [id, ...]}}
    <id>/                one directory per candidate (model files, adapter.npz, ...)

``active[kind]`` is a stack: the last id is the active model, promotion pushes, rollback pops.
The file is replaced atomically (write to a temporary file, then rename), so a reader never sees
a half-written registry.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from search.errors import SearchError

KINDS = ("embedder", "adapter", "reranker")


class RegistryError(SearchError):
    """A registry operation cannot be done (unknown candidate, nothing to roll back)."""


@dataclass
class Candidate:
    id: str
    kind: str
    base_model: str
    data_digest: str
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    training_seconds: float | None = None
    promoted: bool = False


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.file = self.root / "registry.json"

    # -- reading -----------------------------------------------------------------------------

    def _load(self) -> dict:
        if not self.file.exists():
            return {"candidates": [], "active": {}}
        return json.loads(self.file.read_text(encoding="utf-8"))

    def _save(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".registry-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
        os.replace(tmp, self.file)

    def candidates(self, kind: str | None = None) -> list[Candidate]:
        return [Candidate(**c) for c in self._load()["candidates"] if kind in (None, c["kind"])]

    def get(self, candidate_id: str) -> Candidate:
        for c in self.candidates():
            if c.id == candidate_id:
                return c
        raise RegistryError(f"no candidate {candidate_id!r} in {self.file}")

    def active(self, kind: str) -> Candidate | None:
        stack = self._load()["active"].get(kind) or []
        return self.get(stack[-1]) if stack else None

    def stack(self, kind: str) -> list[str]:
        """Ids promoted for ``kind``, oldest first: the last is active, rollback pops it."""
        return list(self._load()["active"].get(kind) or [])

    def active_path(self, kind: str) -> Path | None:
        cand = self.active(kind)
        return self.path(cand.id) if cand else None

    def path(self, candidate_id: str) -> Path:
        return self.root / candidate_id

    # -- writing -----------------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        n, existing = 1, {c.id for c in self.candidates()}
        while (cid := f"{kind}-{stamp}-{n}") in existing or self.path(cid).exists():
            n += 1
        return cid

    def register(self, candidate: Candidate) -> Candidate:
        if candidate.kind not in KINDS:
            raise RegistryError(f"unknown model kind {candidate.kind!r}; one of {', '.join(KINDS)}")
        data = self._load()
        data["candidates"] = [c for c in data["candidates"] if c["id"] != candidate.id]
        data["candidates"].append(asdict(candidate))
        self._save(data)
        return candidate

    def update_metrics(self, candidate_id: str, metrics: dict) -> None:
        data = self._load()
        for c in data["candidates"]:
            if c["id"] == candidate_id:
                c["metrics"] = metrics
        self._save(data)

    def promote(self, candidate_id: str) -> Candidate:
        data = self._load()
        cand = next((c for c in data["candidates"] if c["id"] == candidate_id), None)
        if cand is None:
            raise RegistryError(f"no candidate {candidate_id!r} in {self.file}")
        stack = data["active"].setdefault(cand["kind"], [])
        if not stack or stack[-1] != candidate_id:
            stack.append(candidate_id)
        cand["promoted"] = True
        self._save(data)
        return Candidate(**cand)

    def rollback(self, kind: str) -> Candidate | None:
        """Deactivate the active model of ``kind``; returns the one active now (None: the base)."""
        data = self._load()
        stack = data["active"].get(kind) or []
        if not stack:
            raise RegistryError(f"no active {kind} to roll back; the base model is in use")
        stack.pop()
        self._save(data)
        return self.get(stack[-1]) if stack else None
