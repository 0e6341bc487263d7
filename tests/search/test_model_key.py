"""A fine-tuned model is known by its registry id, so a moved data dir keeps working."""

from __future__ import annotations

import sqlite3

from search.models import model_key, same_model


def test_registry_models_compare_by_id_others_by_name():
    old = "/srv/lorebot/data/models/embedder-20261121-092346-1"
    new = "/mnt/restore/data/models/embedder-20261121-092346-1"
    assert same_model(old, new) and model_key(new) == "registry:embedder-20261121-092346-1"
    assert not same_model(old, "/srv/lorebot/data/models/embedder-20261121-092346-2")
    # Outside a registry, a path is a path and a name is a name.
    assert not same_model("/a/my-model", "/b/my-model")
    assert not same_model("/a/models/my-model", "/b/models/my-model")
    assert same_model("all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
    assert same_model(None, None) and not same_model(None, "all-MiniLM-L6-v2")


async def test_an_index_pinned_to_a_registry_model_is_read_after_the_data_dir_moved(tmp_path):
    from search.index.sqlite import SqliteIndex
    from tests.search.index_contract import axis, entry, put

    old_dir, new_dir = tmp_path / "old" / "models", tmp_path / "new" / "models"
    model = "embedder-20261121-092346-1"
    path = tmp_path / "index.sqlite3"
    async with SqliteIndex(path) as index:
        await put(index, entry("d", "vpn port"))
    with sqlite3.connect(path) as conn:  # as an embedder promotion leaves it
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)",
                     (str(old_dir / model),))

    moved = SqliteIndex(path, embedder_model=str(new_dir / model))
    await moved.open()
    try:
        assert [h.doc_id for h in await moved.knn(axis(0), 5)] == ["d"]
    finally:
        await moved.close()
    other = SqliteIndex(path, embedder_model=str(new_dir / "embedder-20261121-092346-2"))
    await other.open()
    try:  # a different model's query vectors still get no dense hits
        assert await other.knn(axis(0), 5) == []
    finally:
        await other.close()
