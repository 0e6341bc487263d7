"""A writer process for the SQLite index crash tests.

    python tests/support/index_kill_writer.py INDEX_PATH COUNT {hang|commit}

Opens the index, starts one transaction and upserts COUNT documents (source ``writer``, ids
``writer-<i>``, 8-dimensional vectors), enough text to make SQLite spill uncommitted pages into
the WAL file. Then:

* ``hang``: prints ``MID-TRANSACTION`` and waits, still inside the transaction, to be killed;
* ``commit``: commits and prints ``COMMITTED``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from search.index.sqlite import SqliteIndex  # noqa: E402
from search.models import Chunk, Document  # noqa: E402

DIM = 8
MID_TRANSACTION = "MID-TRANSACTION"
COMMITTED = "COMMITTED"


def document(i: int) -> tuple[Document, list[Chunk], np.ndarray]:
    doc_id = f"writer-{i}"
    # Varied words so the FTS index grows like a real one, not one repeated posting list.
    text = " ".join(f"marmot{i} word{(i * 7 + j) % 997} filler{j}" for j in range(60))
    doc = Document(doc_id, "writer", f"Writer document {i}", text, f"hash-{i}")
    chunks = [Chunk(f"{doc_id}#{n}", doc_id, n, text, doc.title) for n in range(2)]
    vectors = np.zeros((2, DIM), dtype=np.float32)
    vectors[:, 7] = 1.0
    return doc, chunks, vectors


async def main(path: Path, count: int, mode: str) -> None:
    index = SqliteIndex(path)
    await index.open()
    async with index.transaction() as writer:
        for i in range(count):
            await writer.upsert(*document(i))
        if mode == "hang":
            print(MID_TRANSACTION, flush=True)
            await asyncio.sleep(3600)  # the test kills us here, inside the transaction
    await index.close()
    print(COMMITTED, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in {"hang", "commit"}:
        sys.exit(__doc__)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
