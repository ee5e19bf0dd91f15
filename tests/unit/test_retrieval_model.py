"""The SASRec model, its point-in-time training data, the training loop and the ranking metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from serendipity.config import RetrievalConfig
from serendipity.retrieval.data import ItemVocabulary, build_training_data, pad_left, training_windows
from serendipity.retrieval.metrics import holdout_report, ranking_metrics
from serendipity.retrieval.model import SASRec
from serendipity.retrieval.train import fit_sasrec


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(**kwargs) -> SASRec:
    torch.manual_seed(0)
    return SASRec(12, embedding_dim=16, max_length=6, num_layers=2, num_heads=2, dropout=0.0, **kwargs).eval()


def test_a_position_never_sees_later_items() -> None:
    model = tiny_model()
    base = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = torch.tensor([[0, 0, 3, 4, 9, 11]])
    with torch.no_grad():
        a, b = model(base), model(changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_padded_positions_are_not_attended_and_give_no_nan() -> None:
    model = tiny_model()
    sequence = torch.tensor([[0, 0, 0, 0, 7, 2], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        before = model.query(sequence)
        model.position_embedding.weight[:4] += 5.0  # only padded slots use these positions
        after = model.query(sequence)
    assert torch.isfinite(before).all()
    assert torch.allclose(before[0], after[0], atol=1e-5)


def test_save_and_load_give_the_same_model(tmp_path: Path) -> None:
    model = tiny_model()
    model.save(tmp_path / "sasrec")
    loaded = SASRec.load(tmp_path / "sasrec")
    assert loaded.config == model.config
    sequence = torch.tensor([[0, 1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(model.query(sequence), loaded.query(sequence))
    with pytest.raises(FileNotFoundError, match="sasrec_config.json"):
        SASRec.load(tmp_path / "missing")


def test_bad_knobs_are_rejected() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SASRec(5, embedding_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="max_length"):
        tiny_model()(torch.zeros((1, 7), dtype=torch.long))


def _logs(rows: list[tuple[int, int, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "satisfaction"])
    return frame.assign(ts=pd.to_datetime(frame["ts"], utc=True))


def test_training_data_is_point_in_time_correct() -> None:
    vocabulary = ItemVocabulary(np.array([10, 20, 30, 40]), np.array([1, 1, 2, 2]))
    logs = _logs(
        [
            (1, 10, "2024-01-01", 0.9),
            (1, 20, "2024-01-02", 0.1),  # not engaged
            (1, 30, "2024-01-03", 0.9),
            (1, 40, "2024-01-09", 0.9),  # first after the cutoff: the target
            (1, 10, "2024-01-10", 0.9),
            (2, 20, "2024-01-02", 0.9),  # no engagement after the cutoff: trains, not evaluated
            (3, 40, "2024-01-10", 0.9),  # nothing before the cutoff: not evaluated
        ]
    )
    data = build_training_data(logs, vocabulary, engaged_above=0.5, holdout_fraction=0.2)
    assert data.cutoff == pd.Timestamp("2024-01-08 04:48", tz="UTC")
    assert [s.tolist() for s in data.train_sequences] == [[1, 3], [2]]  # indices of 10, 30 / 20
    assert [s.tolist() for s in data.holdout_inputs] == [[1, 3]]
    assert data.holdout_targets.tolist() == [4]  # item 40
    assert data.popularity.tolist() == [0, 1, 1, 1, 0]


def test_engaged_items_outside_the_catalog_are_an_error() -> None:
    vocabulary = ItemVocabulary(np.array([10]), np.array([1]))
    logs = _logs([(1, 10, "2024-01-01", 0.9), (1, 99, "2024-01-02", 0.9)])
    with pytest.raises(ValueError, match=r"not in the catalog: \[99\]"):
        build_training_data(logs, vocabulary, engaged_above=0.5, holdout_fraction=0.2)


def test_training_windows_cut_sequences_from_their_end() -> None:
    inputs, targets = training_windows([np.array([1, 2, 3, 4, 5]), np.array([7])], length=3)
    assert inputs.tolist() == [[2, 3, 4], [0, 0, 1]]  # [7] alone has no next item: no window
    assert targets.tolist() == [[3, 4, 5], [0, 1, 2]]
    assert pad_left([np.array([1, 2, 3, 4])], 2).tolist() == [[3, 4]]


def test_ranking_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.1, 0.2, 0.3]])
    metrics = ranking_metrics(scores, np.array([1, 2, 1]), k=2)  # ranks 0, 1, 2
    assert metrics.hit_rate == pytest.approx(2 / 3) and metrics.users == 3
    assert metrics.ndcg == pytest.approx((1.0 + 1 / np.log2(3)) / 3)


def test_training_learns_a_successor_pattern_popularity_cannot() -> None:
    """Item i is always followed by i + 1 (cyclically): only a sequence model can predict that."""
    num_items, rng = 20, np.random.default_rng(0)
    starts = rng.integers(0, num_items, size=300)
    sequences = [(start + np.arange(8)) % num_items + 1 for start in starts]
    vocabulary = ItemVocabulary(np.arange(100, 100 + num_items), np.zeros(num_items, dtype=np.int64))
    holdout_inputs = sequences[:50]
    data_fields = {
        "vocabulary": vocabulary,
        "train_sequences": sequences,
        "holdout_inputs": holdout_inputs,
        "holdout_targets": np.array([s[-1] % num_items + 1 for s in holdout_inputs]),
        "popularity": np.bincount(np.concatenate(sequences), minlength=num_items + 1),
        "cutoff": pd.Timestamp("2024-01-01", tz="UTC"),
    }
    from serendipity.retrieval.data import TrainingData

    data = TrainingData(**data_fields)
    settings = RetrievalConfig(
        embedding_dim=16,
        max_history=6,
        epochs=8,
        batch_size=32,
        num_negatives=8,
        learning_rate=5e-3,
        dropout=0.0,
    )
    model, history = fit_sasrec(data, settings)
    assert history[-1]["loss"] < history[0]["loss"]
    report = holdout_report(model, data, k=1)
    assert report.sasrec.hit_rate > 0.8
    assert report.popularity.hit_rate < 0.3
    assert report.beats_popularity
    assert report.to_json()["sasrec"]["hit_rate@1"] == report.sasrec.hit_rate  # keys as before
    assert dataclasses.asdict(model.config)["num_items"] == num_items
