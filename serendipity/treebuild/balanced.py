"""Traffic-balanced clustering of one parent group: k-means, then capacity-constrained assignment.

Design: under each parent, a traffic-weighted k-means (sklearn, seeded) gives ``k`` centroids. Every
child may hold at most ``(1 + tolerance) / k`` of the parent's traffic. Per-child cost offsets
("prices", the dual of the balanced assignment) are raised for overfull children until the nearest
child after the offsets mostly respects that capacity; a greedy pass then enforces it exactly,
placing items with the strongest preference first, so the items that change child are those on a
border. Centroids are re-estimated from the balanced assignment for a few rounds (balanced k-means).
Each child then holds between ``(1 - (k-1) tolerance) / k`` and ``(1 + tolerance) / k`` of the
parent's traffic, up to one item's traffic. Deterministic per seed: rows are processed in item-id
order and every tie is broken by index.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from serendipity.config import TreeBuildConfig
from serendipity.treebuild.describe import PATH_SEPARATOR

_CENTROID_WEIGHT_FLOOR = 1e-3  # lets zero-traffic items pull centroids a little


def combine_features(
    text: np.ndarray, image: np.ndarray, has_image: np.ndarray, image_weight: float
) -> np.ndarray:
    """Concatenate unit text embeddings with weighted image features.

    Items without a thumbnail get the mean image features of the items in the group that have one,
    so "has no thumbnail" never becomes a topic of its own.
    """
    text = np.asarray(text, dtype=np.float64)
    if image_weight == 0 or image.size == 0 or not has_image.any():
        return text
    image = np.asarray(image, dtype=np.float64).copy()
    image[~has_image] = image[has_image].mean(axis=0)
    return np.hstack([text, image_weight * image])


def _squared_distances(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    cross = features @ centroids.T
    return (features**2).sum(axis=1)[:, None] - 2 * cross + (centroids**2).sum(axis=1)[None, :]


def balancing_prices(
    distances: np.ndarray, weights: np.ndarray, capacity: float, rounds: int = 100
) -> np.ndarray:
    """Per-child cost offsets that make "nearest child after the offset" respect ``capacity``.

    A subgradient ascent on the dual of the balanced assignment: an overfull child gets dearer,
    so items on its border move to their next-nearest child first (minimal disruption of topics).
    """
    k = distances.shape[1]
    target = weights.sum() / k
    prices = np.zeros(k)
    scale = float(np.median(np.abs(distances - distances.mean(axis=1, keepdims=True)))) + 1e-12
    for round_number in range(rounds):
        loads = np.bincount(np.argmin(distances + prices, axis=1), weights=weights, minlength=k)
        if loads.max() <= capacity:
            break
        prices += scale * 0.5 / np.sqrt(1 + round_number) * (loads / target - 1)
    return prices


def capacity_assign(
    features: np.ndarray, weights: np.ndarray, centroids: np.ndarray, tolerance: float
) -> np.ndarray:
    """Assign each row to its cheapest child that has room for its weight.

    Costs are squared distances plus :func:`balancing_prices`; rows with the strongest preference
    (largest gap between their best and second-best child) are placed first, so the rows that move
    when a child is full are the ones on its border.
    """
    k = len(centroids)
    capacity = weights.sum() / k * (1 + tolerance)
    distances = _squared_distances(features, centroids)
    costs = distances + balancing_prices(distances, weights, capacity)
    preference = np.argsort(costs, axis=1, kind="stable")
    if k > 1:
        sorted_costs = np.take_along_axis(costs, preference[:, :2], axis=1)
        regret = sorted_costs[:, 1] - sorted_costs[:, 0]
    else:
        regret = np.zeros(len(features))
    order = np.lexsort((np.arange(len(features)), -weights, -regret))
    remaining = np.full(k, capacity)
    labels = np.empty(len(features), dtype=np.int64)
    for row in order:
        weight = weights[row]
        fitting = preference[row][remaining[preference[row]] >= weight]
        child = int(fitting[0]) if len(fitting) else int(np.argmax(remaining))
        labels[row] = child
        remaining[child] -= weight
    return labels


def _fill_empty_children(labels: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Give every child at least one item: move the closest item out of the most populated child."""
    labels = labels.copy()
    for child in range(k):
        if (labels == child).any():
            continue
        counts = np.bincount(labels, minlength=k)
        donor = int(np.argmax(counts))
        members = np.flatnonzero(labels == donor)
        labels[members[np.argmin(distances[members, child])]] = child
    return labels


def _weighted_centroids(
    features: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int, previous: np.ndarray
) -> np.ndarray:
    centroid_weights = weights + _CENTROID_WEIGHT_FLOOR * max(weights.mean(), 1e-12)
    centroids = previous.copy()
    for child in range(k):
        members = labels == child
        if members.any():
            centroids[child] = np.average(features[members], axis=0, weights=centroid_weights[members])
    return centroids


def balanced_kmeans(
    features: np.ndarray,
    traffic: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    tolerance: float = 0.05,
    iterations: int = 5,
) -> np.ndarray:
    """Split one parent group into ``min(k, n)`` children of near-equal traffic.

    Args:
        features: ``(n, d)`` item features, rows in a deterministic (e.g. item-id) order.
        traffic: ``(n,)`` non-negative traffic per item (e.g. interaction counts).
        k: number of children wanted.

    Returns:
        ``(n,)`` child indices in ``0..min(k, n) - 1``; child 0 holds the most traffic.
    """
    features = np.asarray(features, dtype=np.float64)
    weights = np.asarray(traffic, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(weights):
        raise ValueError(f"features {features.shape} and traffic {weights.shape} do not match")
    if (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("traffic must be finite and non-negative")
    n = len(features)
    k = min(k, n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if weights.sum() == 0:
        weights = np.ones(n)
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed)
    kmeans.fit(features, sample_weight=weights + _CENTROID_WEIGHT_FLOOR * weights.mean())
    centroids = kmeans.cluster_centers_
    labels = capacity_assign(features, weights, centroids, tolerance)
    for _ in range(iterations):
        centroids = _weighted_centroids(features, weights, labels, k, centroids)
        updated = capacity_assign(features, weights, centroids, tolerance)
        if np.array_equal(updated, labels):
            break
        labels = updated
    labels = _fill_empty_children(labels, _squared_distances(features, centroids), k)
    return _order_by_traffic(labels, weights, k)


def _order_by_traffic(labels: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    child_traffic = np.bincount(labels, weights=weights, minlength=k)
    first_row = np.array([np.flatnonzero(labels == child)[0] for child in range(k)])
    rank = np.lexsort((first_row, -child_traffic))
    relabel = np.empty(k, dtype=np.int64)
    relabel[rank] = np.arange(k)
    return relabel[labels]


def split_parent_group(
    group: pd.DataFrame,
    branching: int,
    *,
    seed: int = 0,
    image_weight: float = 0.5,
    tolerance: float = 0.05,
    iterations: int = 5,
) -> pd.DataFrame:
    """``applyInPandas`` body: split the items of one parent (same ``path``) into children.

    ``group`` has columns item_id, path, traffic, text_embedding, image_embedding, has_image; the
    result is the same rows sorted by item_id with ``path`` extended by the child index.
    """
    group = group.sort_values("item_id", kind="stable").reset_index(drop=True)
    has_image = group["has_image"].to_numpy(dtype=bool)
    features = combine_features(
        np.stack(group["text_embedding"].to_numpy()),
        np.stack(group["image_embedding"].to_numpy()),
        has_image,
        image_weight,
    )
    children = balanced_kmeans(
        features,
        group["traffic"].to_numpy(dtype=np.float64),
        branching,
        seed=seed,
        tolerance=tolerance,
        iterations=iterations,
    )
    parent = str(group["path"].iloc[0])
    group["path"] = [f"{parent}{PATH_SEPARATOR}{child}" if parent else str(child) for child in children]
    return group


def splitter(branching: int, tree: TreeBuildConfig) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The one-argument ``applyInPandas`` body splitting a parent group into ``branching`` children."""

    def split(group: pd.DataFrame) -> pd.DataFrame:
        return split_parent_group(
            group,
            branching,
            seed=tree.seed,
            image_weight=tree.image_weight,
            tolerance=tree.balance_tolerance,
            iterations=tree.refine_iterations,
        )

    return split
