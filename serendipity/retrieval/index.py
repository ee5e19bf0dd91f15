"""Item index restricted by cluster: one small faiss index per level-L cluster, plus an unrestricted one.

A search inside a cluster touches only that cluster's vectors (never an id filter over the corpus).
Clusters up to ``flat_max_items`` items get an exact ``IndexFlatIP``; larger ones an HNSW graph with the
inner-product metric. Saved as one ``.npz`` of serialised faiss indexes plus each cluster's item ids.

With faiss-gpu and a GPU (``faiss.get_num_gpus() > 0``), ``load`` (Serve start-up, evaluation) and
``to_gpu`` move the flat indexes to the GPU (exact search, the same results); HNSW graphs, which faiss
cannot search on a GPU, stay on the CPU. Without a GPU nothing changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serendipity.logs import quiet_loaders

quiet_loaders()  # faiss's loader logs the CPU build it picks on import: only when verbose
import faiss  # noqa: E402

INDEX_FILE = "cluster_index.npz"
INDEX_INFO_FILE = "cluster_index.json"
ALL_ITEMS = -1  # key of the unrestricted index in the saved file
GPU_TEMP_MEMORY_BYTES = 256 * 1024**2  # faiss-gpu's scratch memory (its default takes 18% of the GPU)


def faiss_gpus() -> int:
    """GPUs faiss can use: 0 with faiss-cpu (or a faiss-gpu build on a machine without one)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None else 0


def on_gpu(index: faiss.Index, resources: object | None) -> faiss.Index:
    """``index`` copied to GPU 0 when ``resources`` are given and faiss can search it there, else itself."""
    if resources is None or not isinstance(index, faiss.IndexFlat):
        return index
    return faiss.index_cpu_to_gpu(resources, 0, index)


def on_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (for serialising); a CPU index itself."""
    return faiss.index_gpu_to_cpu(index) if "Gpu" in type(index).__name__ else index


def gpu_resources(use_gpu: bool | None = None) -> object | None:
    """Shared faiss GPU resources when ``use_gpu`` (None: whenever faiss sees a GPU), else None."""
    if use_gpu is False or (use_gpu is None and faiss_gpus() == 0):
        return None
    if faiss_gpus() == 0:
        raise RuntimeError(
            "a GPU index was asked for, but faiss sees no GPU (install faiss-gpu: the gpu extra)"
        )
    resources = faiss.StandardGpuResources()
    resources.setTempMemory(GPU_TEMP_MEMORY_BYTES)
    return resources


class UnknownClusterError(KeyError):
    """The requested cluster has no items in the index."""


@dataclass
class _Partition:
    index: faiss.Index
    item_ids: np.ndarray  # int64, row i of the index holds item_ids[i]


def _build(vectors: np.ndarray, flat_max_items: int, hnsw_m: int) -> faiss.Index:
    dim = vectors.shape[1]
    if len(vectors) <= flat_max_items:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)
    return index


class ClusterIndex:
    """``search(query, k, cluster_id)`` -> (item ids, scores) inside one cluster, or over all items."""

    def __init__(
        self, partitions: dict[int, _Partition], dim: int, info: dict[str, int] | None = None
    ) -> None:
        if ALL_ITEMS not in partitions:
            raise ValueError("the unrestricted index (ALL_ITEMS) is missing")
        self._partitions = partitions
        self.dim = dim
        self.info = info or {}
        self.gpu_resources: object | None = None

    @property
    def device(self) -> str:
        return "cpu" if self.gpu_resources is None else "gpu"

    def to_gpu(self, use_gpu: bool | None = None) -> ClusterIndex:
        """Move the flat indexes to the GPU when ``use_gpu`` (None: when faiss sees one); returns self."""
        resources = gpu_resources(use_gpu) if self.gpu_resources is None else None
        if resources is not None:
            for partition in self._partitions.values():
                partition.index = on_gpu(partition.index, resources)
            self.gpu_resources = resources
        return self

    @classmethod
    def build(
        cls,
        item_ids: np.ndarray,
        cluster_ids: np.ndarray,
        vectors: np.ndarray,
        *,
        flat_max_items: int = 50_000,
        hnsw_m: int = 32,
    ) -> ClusterIndex:
        item_ids = np.asarray(item_ids, dtype=np.int64)
        cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(item_ids) == len(cluster_ids) == len(vectors):
            raise ValueError(
                f"item_ids ({len(item_ids)}), cluster_ids ({len(cluster_ids)}) and vectors ({len(vectors)}) "
                "differ in length"
            )
        if (cluster_ids == ALL_ITEMS).any():
            raise ValueError(f"cluster id {ALL_ITEMS} is reserved for the unrestricted index")
        order = np.argsort(cluster_ids, kind="stable")
        sorted_clusters = cluster_ids[order]
        bounds = np.flatnonzero(np.diff(sorted_clusters)) + 1
        partitions = {}
        for rows in np.split(order, bounds):
            if len(rows):
                index = _build(vectors[rows], flat_max_items, hnsw_m)
                partitions[int(cluster_ids[rows[0]])] = _Partition(index, item_ids[rows])
        partitions[ALL_ITEMS] = _Partition(_build(vectors, flat_max_items, hnsw_m), item_ids)
        info = {"flat_max_items": flat_max_items, "hnsw_m": hnsw_m}
        return cls(partitions, vectors.shape[1], info)

    @property
    def cluster_ids(self) -> list[int]:
        return sorted(c for c in self._partitions if c != ALL_ITEMS)

    def __contains__(self, cluster_id: object) -> bool:
        return cluster_id in self._partitions and cluster_id != ALL_ITEMS

    def cluster_size(self, cluster_id: int) -> int:
        return len(self._partitions[cluster_id].item_ids) if cluster_id in self else 0

    def __len__(self) -> int:
        return len(self._partitions[ALL_ITEMS].item_ids)

    def search(
        self, query: np.ndarray, k: int, cluster_id: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (item ids, inner-product scores) of one query vector, best first.

        ``cluster_id=None`` searches every item; a cluster id searches only that cluster's items.
        """
        if cluster_id is None:
            partition = self._partitions[ALL_ITEMS]
        elif cluster_id in self:
            partition = self._partitions[cluster_id]
        else:
            raise UnknownClusterError(f"cluster {cluster_id} has no items in the index")
        query = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, self.dim))
        k = min(k, len(partition.item_ids))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores, rows = partition.index.search(query, k)
        found = rows[0] >= 0
        return partition.item_ids[rows[0][found]], scores[0][found]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        arrays = {}
        for cluster_id, partition in self._partitions.items():
            arrays[f"index_{cluster_id}"] = faiss.serialize_index(on_cpu(partition.index))
            arrays[f"items_{cluster_id}"] = partition.item_ids
        np.savez(directory / INDEX_FILE, **arrays)
        (directory / INDEX_INFO_FILE).write_text(json.dumps({"dim": self.dim, **self.info}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, *, use_gpu: bool | None = None) -> ClusterIndex:
        """Load a saved index, on the GPU when ``use_gpu`` (None: whenever faiss sees a GPU)."""
        directory = Path(directory)
        info = json.loads((directory / INDEX_INFO_FILE).read_text())
        partitions = {}
        with np.load(directory / INDEX_FILE) as arrays:
            for name in arrays.files:
                if name.startswith("index_"):
                    cluster_id = int(name.removeprefix("index_"))
                    index = faiss.deserialize_index(arrays[name])
                    partitions[cluster_id] = _Partition(index, arrays[f"items_{cluster_id}"])
        dim = int(info.pop("dim"))
        return cls(partitions, dim, info).to_gpu(use_gpu)
