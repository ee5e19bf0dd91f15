"""Offline replay on logged data: does the held-out next item fall in the MLLM's serendipitous cluster?

Per user (engaged interactions sorted by time; engaged = satisfaction above
``engagement.satisfaction_above``) the last engaged interaction is held out and the engaged item before
it is the context item. Four guesses of the held-out item's level-L cluster are scored on the context
items the MLLM covered: the MLLM's serendipitous cluster, the cluster of the exploitation sequence
model's top-1 item, the most frequent serendipitous next cluster of the context's cluster in the mined
pairs (without the held-out transitions), and a random sibling cluster (its expected hit rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from serendipity.config import PipelineConfig
from serendipity.eval.replay_results import (
    HitRate,
    ReplayReport,
    ReplaySubset,
    TrainingOverlap,
    ValidationPeriodReplay,
)
from serendipity.intervals import wilson_interval
from serendipity.layout import WorkLayout
from serendipity.schema import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    MODEL_VERSION_FEATURE,
    SERENDIPITOUS_CLUSTER_FEATURE,
    level_column,
)
from serendipity.tree import ClusterTree

METHOD_HELP = {
    "mllm": "the held-out item's cluster is the MLLM's serendipitous cluster for the context item",
    "exploitation_top1": "it is the cluster of the sequence model's unrestricted top-1 item",
    "non_llm_frequent": "it is the most frequent serendipitous next cluster of the context's cluster in "
    "the mined pairs (held-out transitions removed)",
    "random_sibling": "expected hit rate of a uniformly random sibling of the context's cluster",
}
NO_CLUSTER = -1


class ReplayError(RuntimeError):
    """An input of the replay is missing or unusable."""


def _read(path: Path, columns: list[str], what: str) -> pd.DataFrame:
    if not path.exists():
        raise ReplayError(f"{what} not found at {path}; run the stage that writes it first")
    table = pq.read_table(path)
    missing = sorted(set(columns) - set(table.column_names))
    if missing:
        raise ReplayError(f"{path}: missing columns {missing}")
    return table.select(columns).to_pandas()


def held_out_cases(interactions: pd.DataFrame, engaged_above: float) -> tuple[pd.DataFrame, int]:
    """One row per user with two or more engaged interactions: context item, held-out next item, history.

    Returns the cases and the number of users with fewer than two engaged interactions.
    """
    engaged = interactions.loc[interactions["satisfaction"] > engaged_above, ["user_id", "item_id", "ts"]]
    engaged = engaged.sort_values(["user_id", "ts", "item_id"], kind="stable")
    rows, too_short = [], 0
    for user_id, group in engaged.groupby("user_id", sort=True):
        items, stamps = group["item_id"].to_numpy(np.int64), group["ts"].to_numpy()
        if len(items) < 2:
            too_short += 1
            continue
        rows.append(
            {
                "user_id": int(user_id),
                "context_item_id": int(items[-2]),
                "next_item_id": int(items[-1]),
                "next_ts": stamps[-1],
                "history": [int(i) for i in items[:-2]],
            }
        )
    columns = ["user_id", "context_item_id", "next_item_id", "next_ts", "history"]
    return pd.DataFrame(rows, columns=columns), too_short


def frequent_next_cluster(pairs: pd.DataFrame, cases: pd.DataFrame) -> dict[int, int]:
    """Most frequent next cluster per context cluster, without each held-out user's pairs from then on."""
    cutoff = pairs["user_id"].map(cases.set_index("user_id")["next_ts"])
    training = pairs[cutoff.isna() | (pairs["ts"] < cutoff)]
    counts = training.groupby(["context_cluster", "next_cluster"]).size().reset_index(name="count")
    counts = counts.sort_values(["context_cluster", "count", "next_cluster"], ascending=[True, False, True])
    best = counts.drop_duplicates("context_cluster")
    return dict(zip(best["context_cluster"].astype(int), best["next_cluster"].astype(int), strict=True))


def exploitation_top1_clusters(config: PipelineConfig, cases: pd.DataFrame) -> list[int]:
    """The cluster of the unrestricted sequence-model top-1 item per case (``NO_CLUSTER`` when none)."""
    from serendipity.retrieval.artifacts import Retriever
    from serendipity.retrieval.recommend import Recommender

    layout = WorkLayout.of(config)
    retriever = Retriever.load(layout.retriever_dir)
    tree = ClusterTree.load(layout.described_tree_source())
    recommender = Recommender(
        retriever.model,
        retriever.index,
        None,  # no feature store: the sequence model's own, unrestricted answer (the exploitation arm)
        tree,
        vocabulary=retriever.vocabulary,
        popularity=retriever.popularity,
        max_k=1,
        degraded_log_interval_s=math.inf,  # absent on purpose: its warning once, not once per case
    )
    clusters = []
    for case in cases.itertuples(index=False):
        answer = recommender.recommend(case.user_id, case.context_item_id, 1, history=case.history)
        clusters.append(answer.items[0].cluster_id if answer.items else NO_CLUSTER)
    return clusters


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else value


def binary_hits(hits: np.ndarray) -> HitRate:
    """Hits, hit rate and 95% Wilson interval of yes/no outcomes (None where undefined: no cases)."""
    low, high = wilson_interval(float(hits.sum()), len(hits))
    rate = float(hits.mean()) if len(hits) else math.nan
    return HitRate(hits=int(hits.sum()), mean=_defined(rate), ci_low=_defined(low), ci_high=_defined(high))


def expected_hits(probabilities: np.ndarray) -> HitRate:
    """Mean of per-case hit probabilities with a normal 95% interval of the Poisson-binomial count."""
    n = len(probabilities)
    if n == 0:
        return HitRate(hits=0.0, mean=None, ci_low=None, ci_high=None)
    mean = float(probabilities.mean())
    half = 1.96 * math.sqrt(float((probabilities * (1 - probabilities)).sum())) / n
    return HitRate(
        hits=float(probabilities.sum()),
        mean=mean,
        ci_low=max(0.0, mean - half),
        ci_high=min(1.0, mean + half),
    )


def score_cases(cases: pd.DataFrame, tree: ClusterTree) -> ReplaySubset:
    """Hit rates of the four guesses over ``cases`` (columns next_cluster, mllm, exploitation_top1, ...)."""
    truth = cases["next_cluster"].to_numpy(np.int64)
    sibling_sets = [set(tree.siblings(int(c))) for c in cases["context_cluster"]]
    random = np.array(
        [1.0 / len(s) if s and int(t) in s else 0.0 for s, t in zip(sibling_sets, truth, strict=True)]
    )
    methods = {
        name: binary_hits(cases[name].to_numpy(np.int64) == truth)
        for name in ("mllm", "exploitation_top1", "non_llm_frequent")
    }
    return ReplaySubset(cases=len(cases), methods={**methods, "random_sibling": expected_hits(random)})


@dataclass(frozen=True)
class ReplayInputs:
    interactions: pd.DataFrame  # validated: user_id, item_id, ts, satisfaction
    item_cluster: pd.Series  # item_id -> level-L cluster (the catalogue)
    predicted: pd.DataFrame  # the MLLM's batch output: item_id, serendipitous_cluster, model_version
    pairs: pd.DataFrame  # mined serendipitous pairs: user_id, context_cluster, next_cluster, ts
    tree: ClusterTree


@dataclass(frozen=True)
class ReplayCases:
    in_catalog: pd.DataFrame  # held-out cases whose context and next item are in the catalogue
    covered: pd.DataFrame  # those whose context item the MLLM covered, with every guess
    too_short: int  # users with fewer than two engaged interactions
    not_in_catalog: int


def read_replay_inputs(layout: WorkLayout, level: int) -> ReplayInputs:
    column = level_column(level)
    interactions = _read(
        layout.validated_dir / INTERACTIONS_FILE,
        ["user_id", "item_id", "ts", "satisfaction"],
        "validated interactions",
    )
    items = _read(layout.catalog_dir() / ITEMS_FILE, ["item_id", column], "catalog items")
    served = ["item_id", SERENDIPITOUS_CLUSTER_FEATURE, MODEL_VERSION_FEATURE]
    predicted = _read(layout.serendipity_path, served, "MLLM predictions")
    pairs = _read(layout.pairs_path, ["user_id", "context_cluster", "next_cluster", "ts"], "mined pairs")
    tree = ClusterTree.load(layout.catalog_dir())
    return ReplayInputs(interactions, items.set_index("item_id")[column], predicted, pairs, tree)


def replay_cases(config: PipelineConfig, inputs: ReplayInputs) -> ReplayCases:
    """Every user's held-out case, labelled with its clusters, and the covered ones with the four guesses."""
    cases, too_short = held_out_cases(inputs.interactions, config.engagement.satisfaction_above)
    cases["context_cluster"] = cases["context_item_id"].map(inputs.item_cluster)
    cases["next_cluster"] = cases["next_item_id"].map(inputs.item_cluster)
    unknown = cases["context_cluster"].isna() | cases["next_cluster"].isna()
    cases = cases[~unknown].astype({"context_cluster": "int64", "next_cluster": "int64"})
    mllm_cluster = inputs.predicted.set_index("item_id")[SERENDIPITOUS_CLUSTER_FEATURE]
    cases["mllm"] = cases["context_item_id"].map(mllm_cluster)
    covered = cases[cases["mllm"].notna()].astype({"mllm": "int64"}).reset_index(drop=True)

    frequent = frequent_next_cluster(inputs.pairs, cases)
    covered["non_llm_frequent"] = [frequent.get(int(c), NO_CLUSTER) for c in covered["context_cluster"]]
    covered["exploitation_top1"] = exploitation_top1_clusters(config, covered)
    return ReplayCases(cases, covered, too_short, int(unknown.sum()))


def serendipitous_next(covered: pd.DataFrame, tree: ClusterTree, level: int) -> pd.Series:
    """Cases whose next cluster is a sibling of the context's cluster (a different one, same parent)."""
    parent_of = {c: tree.parent(c) for c in tree.at_level(level)}
    return (covered["next_cluster"] != covered["context_cluster"]) & (
        covered["next_cluster"].map(parent_of) == covered["context_cluster"].map(parent_of)
    )


def training_overlap(config: PipelineConfig, inputs: ReplayInputs, covered: pd.DataFrame) -> TrainingOverlap:
    from serendipity.retrieval.data import time_cutoff

    cutoff = time_cutoff(inputs.interactions["ts"], config.retrieval.holdout_fraction)
    before_cutoff = int((covered["next_ts"] < cutoff).sum())
    return TrainingOverlap(
        retriever_cutoff=pd.Timestamp(cutoff).isoformat(),
        held_out_before_retriever_cutoff=before_cutoff,
        held_out_after_retriever_cutoff=len(covered) - before_cutoff,
        note="the sequence model trained on engaged interactions before the cutoff, so held-out items "
        "before it were in its training data; the MLLM was fine-tuned on pairs mined from the whole "
        "log, which may include held-out transitions; the non-LLM baseline excludes them",
    )


def replay_report(
    config: PipelineConfig,
    inputs: ReplayInputs,
    cases: ReplayCases,
    validation_period: ValidationPeriodReplay | None = None,
) -> ReplayReport:
    level, in_catalog, covered = config.mining.level, cases.in_catalog, cases.covered
    serendipitous = serendipitous_next(covered, inputs.tree, level)
    return ReplayReport(
        protocol="last engaged interaction per user held out; context = the engaged item before it; "
        f"hit = the held-out item's level-{level} cluster equals the guess; cases restricted to context "
        "items the MLLM covered; 95% Wilson intervals (normal for the random sibling's expectation)",
        level=level,
        engaged_satisfaction=config.engagement.satisfaction_above,
        users_held_out=len(in_catalog) + cases.not_in_catalog,
        excluded={
            "users with fewer than two engaged interactions": cases.too_short,
            "cases whose context or next item is not in the catalog": cases.not_in_catalog,
            "cases whose context item the MLLM did not cover": len(in_catalog) - len(covered),
        },
        mllm_coverage=len(covered) / len(in_catalog) if len(in_catalog) else None,
        served_model_versions=sorted(inputs.predicted[MODEL_VERSION_FEATURE].astype(str).unique()),
        training_overlap=training_overlap(config, inputs, covered),
        subsets={
            "all": score_cases(covered, inputs.tree),
            "serendipitous_next": score_cases(covered[serendipitous], inputs.tree),
        },
        method_help=METHOD_HELP,
        validation_period=validation_period,
    )


def validation_period_replay(config: PipelineConfig, inputs: ReplayInputs) -> ValidationPeriodReplay | None:
    """Every logged serendipitous transition after the calibration cut whose context item inference
    covered: is its next cluster the served one, the prior's, the guess's? Split by whether the context
    item has an item-level prior (warm: enough transitions of its own before the cut) or not (cold, like a
    new video: only the model can know it); chance is one over the context cluster's siblings."""
    from serendipity.mllm.satisfaction_guess import best_sibling_guess
    from serendipity.nomination.combine import PRIOR_ALONE, nominate
    from serendipity.nomination.prior import epoch_micros, load_prior

    layout, level = WorkLayout.of(config), config.mining.level
    if not layout.prior_info_path.is_file():
        return None
    prior = load_prior(layout)
    pairs = _read(
        layout.pairs_path, ["context_item_id", "context_cluster", "next_cluster", "ts"], "mined pairs"
    )
    micros = epoch_micros(pairs["ts"])
    cases = pairs[micros >= prior.info.cuts.calibration_end_micros].copy()
    served = inputs.predicted.set_index("item_id")[SERENDIPITOUS_CLUSTER_FEATURE]
    cases = cases[cases["context_item_id"].isin(served.index)].reset_index(drop=True)
    cases["served"] = cases["context_item_id"].map(served).astype("int64")
    guess, _ = best_sibling_guess(config)
    cases["non_llm_guess"] = [guess.get(int(c), NO_CLUSTER) for c in cases["context_cluster"]]
    prior_choice = []
    for item, cluster in zip(cases["context_item_id"], cases["context_cluster"], strict=True):
        options = inputs.tree.siblings(int(cluster))
        chances = prior.probabilities(int(item), int(cluster), options)
        prior_choice.append(nominate(int(item), options, None, chances, PRIOR_ALONE).best or NO_CLUSTER)
    cases["transition_prior"] = prior_choice
    cases["warm"] = cases["context_item_id"].map(prior.is_warm).astype(bool)
    truth = cases["next_cluster"].to_numpy(np.int64)
    chance = np.array([1.0 / max(1, len(inputs.tree.siblings(int(c)))) for c in cases["context_cluster"]])

    def scored(mask: np.ndarray) -> ReplaySubset:
        methods = {
            name: binary_hits(cases.loc[mask, name].to_numpy(np.int64) == truth[mask])
            for name in ("served", "transition_prior", "non_llm_guess")
        }
        return ReplaySubset(
            cases=int(mask.sum()), methods={**methods, "random_sibling": expected_hits(chance[mask])}
        )

    warm = cases["warm"].to_numpy()
    return ValidationPeriodReplay(
        protocol=f"every serendipitous pair (level {level}) after the calibration cut "
        f"{prior.info.cuts.iso()['calibration_end']} whose context item has a served cluster; hit = its "
        "next cluster is the method's; warm = the context item has an item-level prior (at least "
        f"{prior.info.min_item_transitions} transitions before the training cut); 95% Wilson intervals",
        prior_snapshot=prior.info.snapshot,
        subsets={"all": scored(np.ones(len(cases), bool)), "warm": scored(warm), "cold": scored(~warm)},
    )


def run_replay(config: PipelineConfig) -> ReplayReport:
    """Score the guesses on every user's last engaged interaction and on the validation period's logged
    serendipitous transitions; write ``reports/replay.json``."""
    layout = WorkLayout.of(config)
    inputs = read_replay_inputs(layout, config.mining.level)
    cases = replay_cases(config, inputs)
    report = replay_report(config, inputs, cases, validation_period_replay(config, inputs))
    report.write(layout.replay_path)
    return report
