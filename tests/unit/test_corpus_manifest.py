"""The corpus manifest's summary and generations, and the corpus prefix sum's partition offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from serendipity.corpus_manifest import CorpusManifest, committed_root, fingerprint
from spark_jobs.mining import partition_offsets


def test_partition_offsets_are_the_sums_of_the_partitions_before() -> None:
    offsets, total = partition_offsets({2: 5, 0: 10, 3: 1})
    assert offsets == {0: 0, 2: 10, 3: 15}
    assert total == 16
    assert partition_offsets({}) == ({}, 0)


def test_fingerprint_is_name_safe_and_wraps_negative_sums() -> None:
    assert fingerprint(3, -1) == "3xffffffffffffffff"
    assert fingerprint(0, None) == "0x0000000000000000"


def test_manifest_round_trips_and_drops_stale_generations(tmp_path: Path) -> None:
    path = tmp_path / "corpus" / "manifest.json"
    old = CorpusManifest(2, "2xaa", "0x00", 0.8, 0.81)
    new = CorpusManifest(3, "3xbb", "2xaa", 0.8, 0.82)
    for manifest in (old, new):
        manifest.items_dir(path).mkdir(parents=True)
    new.write(path)
    assert CorpusManifest.load(path) == new
    assert [p.name for p in committed_root(path).iterdir()] == [new.generation]
    assert new.baseline_dir(path).parent == new.items_dir(path).parent


def test_manifest_without_a_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"corpus_items": 1}')
    with pytest.raises(ValueError, match="lacks key"):
        CorpusManifest.load(path)
    assert CorpusManifest.load(tmp_path / "absent.json") is None
