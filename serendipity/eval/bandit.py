"""Neural linear bandit over level-L clusters (Riquelme, Tucker & Snoek 2018, "Deep Bayesian Bandits
Showdown"): a fixed neural feature map feeds one Bayesian linear regression per cluster, and Thompson
sampling picks the cluster to recommend from.

The feature map is frozen: the SASRec embedding of the context item and the SASRec query vector of the
user, each scaled to unit length, concatenated and sent through a fixed Gaussian random projection, plus
a bias feature. Each cluster c has a Gaussian posterior over its weights w_c with ridge prior
N(0, noise / prior_precision * I): precision A_c = prior_precision * I + sum x x^T, mean
mu_c = A_c^-1 sum r x, covariance noise * A_c^-1 (noise variance known).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_CLUSTER = -1


class FeatureMap:
    """x(context vector, query vector) = [P^T [c / |c|, q / |q|] / sqrt(dim), 1] with a fixed Gaussian P."""

    def __init__(self, input_dim: int, output_dim: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 7919])
        self.projection = rng.standard_normal((2 * input_dim, output_dim)) / np.sqrt(output_dim)
        self.dim = output_dim + 1

    def __call__(self, context_vectors: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
        def unit(rows: np.ndarray) -> np.ndarray:
            rows = np.asarray(rows, dtype=np.float64)
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            return rows / np.where(norms > 0, norms, 1.0)

        joined = np.concatenate([unit(context_vectors), unit(query_vectors)], axis=1)
        projected = joined @ self.projection
        return np.concatenate([projected, np.ones((len(projected), 1))], axis=1)


class NeuralLinearBandit:
    """One Bayesian linear head per cluster over a shared feature map; Thompson sampling over clusters."""

    def __init__(
        self,
        cluster_ids: Sequence[int],
        feature_map: FeatureMap,
        *,
        prior_precision: float = 1.0,
        noise_variance: float = 0.25,
    ) -> None:
        if not len(cluster_ids):
            raise ValueError("the bandit needs at least one cluster")
        self.cluster_ids = np.asarray(sorted(int(c) for c in cluster_ids), dtype=np.int64)
        self._row = {int(c): i for i, c in enumerate(self.cluster_ids)}
        self.feature_map = feature_map
        self.noise_variance = noise_variance
        dim = feature_map.dim
        self.precision = np.repeat(prior_precision * np.eye(dim)[None], len(self.cluster_ids), axis=0)
        self.reward_sums = np.zeros((len(self.cluster_ids), dim))
        self.observations = np.zeros(len(self.cluster_ids), dtype=np.int64)

    def features(self, context_vectors: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
        return self.feature_map(context_vectors, query_vectors)

    def posterior(self, cluster_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, covariance) of the cluster's weights."""
        row = self._row[int(cluster_id)]
        covariance = np.linalg.inv(self.precision[row])
        return covariance @ self.reward_sums[row], self.noise_variance * covariance

    def update(self, cluster_ids: Sequence[int], features: np.ndarray, rewards: Sequence[float]) -> None:
        """Add observations (x, reward) to the posteriors of their clusters; unknown clusters are an error."""
        features = np.asarray(features, dtype=np.float64).reshape(len(cluster_ids), self.feature_map.dim)
        for cluster_id, x, reward in zip(cluster_ids, features, rewards, strict=True):
            if int(cluster_id) not in self._row:
                raise KeyError(f"cluster {cluster_id} is not one of the bandit's clusters")
            row = self._row[int(cluster_id)]
            self.precision[row] += np.outer(x, x)
            self.reward_sums[row] += float(reward) * x
            self.observations[row] += 1

    def choose(
        self,
        features: np.ndarray,
        allowed: np.ndarray,
        rng: np.random.Generator | Sequence[np.random.Generator],
    ) -> np.ndarray:
        """Thompson sampling: per request, one weight draw per cluster; the best allowed cluster wins.

        ``allowed`` is a (requests, clusters) boolean mask over ``cluster_ids``; a request with no allowed
        cluster gets ``NO_CLUSTER``. ``rng`` is one generator, or one per request (so that a request's
        draw does not depend on which other requests share its batch).
        """
        features = np.asarray(features, dtype=np.float64)
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (len(features), len(self.cluster_ids)):
            raise ValueError(
                f"allowed mask has shape {allowed.shape}, expected {(len(features), len(self.cluster_ids))}"
            )
        covariances = np.linalg.inv(self.precision)
        means = np.einsum("cij,cj->ci", covariances, self.reward_sums)
        factors = np.linalg.cholesky(self.noise_variance * covariances)  # (clusters, dim, dim)
        shape = (len(self.cluster_ids), self.feature_map.dim)
        if isinstance(rng, np.random.Generator):
            noise = rng.standard_normal((len(features), *shape))
        else:
            if len(rng) != len(features):
                raise ValueError(f"{len(rng)} generators for {len(features)} requests")
            noise = np.stack([g.standard_normal(shape) for g in rng]) if len(rng) else np.zeros((0, *shape))
        weights = means[None] + np.einsum("cij,ncj->nci", factors, noise)
        scores = np.einsum("nci,ni->nc", weights, features)
        scores = np.where(allowed, scores, -np.inf)
        best = scores.argmax(axis=1)
        return np.where(allowed.any(axis=1), self.cluster_ids[best], NO_CLUSTER)

    def allowed_mask(self, blocked: Sequence[set[int] | frozenset[int]]) -> np.ndarray:
        """(requests, clusters) mask: every cluster except each request's blocked ones."""
        mask = np.ones((len(blocked), len(self.cluster_ids)), dtype=bool)
        for row, clusters in enumerate(blocked):
            for cluster_id in clusters:
                column = self._row.get(int(cluster_id))
                if column is not None:
                    mask[row, column] = False
        return mask
