"""Unique, readable cluster descriptions from the terms that distinguish a cluster from its siblings.

A cluster is named by the path of its ancestors' labels plus its own, e.g. ``"Comedy / Romance / Paris"``.
A label is the term ``t`` with the highest ``p(t|c) * log(p(t|c) / p(t|parent))`` (how common the term
is in the cluster times how much more common than in the parent): frequent and distinguishing.
``p`` is the share of item weight (``1 + log1p(traffic)``, so popular items shape the name more)
carrying the term. Siblings never share a label term and a label never repeats an ancestor's
term, so paths are unique by construction; a final pass still suffixes any duplicate.

Clusters are identified by their path of child indices, written ``"0.2.1"`` (level = number of parts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

PATH_SEPARATOR = "."
DESCRIPTION_SEPARATOR = " / "
_TERM_PATTERN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_EXTRA_STOP_WORDS = frozenset({"genres", "genre", "listed", "tags", "tag", "title", "video", "movie", "film"})
_SMOOTHING = 1e-4
_PHRASE_BREAK = re.compile(r"[.,;:|!?()\[\]/#\"]+")
# a word pair replaces its word when it covers this share of the word's items (e.g. "High School")
_PAIR_COVERAGE = 0.8
TERM_WEIGHT_COLUMNS = ("path", "term", "weight")


def tokenize(text: str | None) -> set[str]:
    """Distinct lower-case terms of ``text``: words (letters, optionally hyphenated; no stop words)
    and pairs of adjacent such words within a phrase (e.g. ``"high school"``)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return set()
    terms: set[str] = set()
    for phrase in _PHRASE_BREAK.split(str(text).lower()):
        previous: str | None = None
        for word in _TERM_PATTERN.findall(phrase):
            if (
                (len(word) >= 3 or "-" in word)
                and word not in ENGLISH_STOP_WORDS
                and word not in _EXTRA_STOP_WORDS
            ):
                terms.add(word)
                if previous is not None:
                    terms.add(f"{previous} {word}")
                previous = word
            else:
                previous = None
    return terms


def item_weight(traffic: np.ndarray | pd.Series) -> np.ndarray:
    return 1.0 + np.log1p(np.asarray(traffic, dtype=np.float64))


def leaf_term_weights(items: pd.DataFrame) -> pd.DataFrame:
    """Summed item weight per (leaf path, term) for items with columns path, traffic, document."""
    rows: dict[tuple[str, str], float] = {}
    weights = item_weight(items["traffic"])
    for path, document, weight in zip(items["path"], items["document"], weights, strict=True):
        for term in tokenize(document):
            rows[(path, term)] = rows.get((path, term), 0.0) + float(weight)
    return pd.DataFrame(
        [(path, term, weight) for (path, term), weight in rows.items()], columns=list(TERM_WEIGHT_COLUMNS)
    )


def leaf_term_weight_batches(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body of :func:`leaf_term_weights` (partial sums; the caller sums per key)."""
    for batch in batches:
        yield leaf_term_weights(batch)


def prefix(path: str, level: int) -> str:
    return PATH_SEPARATOR.join(path.split(PATH_SEPARATOR)[:level])


def _rolled_up(frame: pd.DataFrame, keys: list[str], level: int) -> pd.DataFrame:
    rolled = frame.assign(path=frame["path"].map(lambda p: prefix(p, level)))
    return rolled.groupby(keys, as_index=False, sort=True)["weight"].sum()


def describe_tree(
    term_weights: pd.DataFrame, leaf_weights: pd.DataFrame, num_levels: int, terms_per_label: int = 1
) -> dict[str, str]:
    """Descriptions of every cluster path found in ``leaf_weights``.

    Args:
        term_weights: columns path (leaf), term, weight (summed item weight carrying the term).
        leaf_weights: columns path (leaf), weight (summed item weight of the leaf).
    """
    descriptions: dict[str, str] = {}
    used_terms: dict[str, frozenset[str]] = {"": frozenset()}
    total_weight = float(leaf_weights["weight"].sum())
    parent_terms = term_weights.groupby("term")["weight"].sum()
    parent_terms_by_path = {"": parent_terms / max(total_weight, 1e-12)}
    for level in range(1, num_levels + 1):
        cluster_weight = _rolled_up(leaf_weights, ["path"], level).set_index("path")["weight"]
        cluster_terms = _rolled_up(term_weights, ["path", "term"], level)
        shares_by_path = {
            path: group.set_index("term")["weight"] / max(float(cluster_weight[path]), 1e-12)
            for path, group in cluster_terms.groupby("path", sort=True)
        }
        for parent, siblings in _siblings(list(cluster_weight.index), level).items():
            labels = _sibling_labels(
                {child: shares_by_path.get(child, pd.Series(dtype=float)) for child in siblings},
                parent_terms_by_path[parent],
                used_terms[parent],
                terms_per_label,
            )
            for child, terms in labels.items():
                label = " ".join(_readable(term) for term in terms) if terms else "Other"
                parent_description = descriptions.get(parent)
                descriptions[child] = (
                    f"{parent_description}{DESCRIPTION_SEPARATOR}{label}" if parent_description else label
                )
                used_terms[child] = used_terms[parent] | frozenset(
                    w for term in terms for w in term.split(" ")
                )
        descriptions = make_unique(descriptions)
        parent_terms_by_path = shares_by_path
    return descriptions


def _siblings(paths: list[str], level: int) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted(paths, key=lambda p: [int(part) for part in p.split(PATH_SEPARATOR)]):
        groups.setdefault(prefix(path, level - 1), []).append(path)
    return groups


def _sibling_labels(
    child_shares: dict[str, pd.Series],
    parent_shares: pd.Series,
    excluded: frozenset[str],
    terms_per_label: int,
) -> dict[str, list[str]]:
    """Greedy: the best (score, child, word) first; a word names one sibling only.

    A chosen word is widened to the word pair holding it when the pair covers most of its items.
    ``excluded`` holds the words of the ancestors' labels.
    """
    candidates: list[tuple[float, str, str]] = []
    for child, shares in child_shares.items():
        if shares.empty:
            continue
        baseline = parent_shares.reindex(shares.index).fillna(0.0).to_numpy()
        values = shares.to_numpy()
        scores = values * np.log((values + _SMOOTHING) / (baseline + _SMOOTHING))
        candidates.extend(
            (float(score), child, term)
            for term, score in zip(shares.index, scores, strict=True)
            if " " not in term and term not in excluded and score > 0
        )
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    labels: dict[str, list[str]] = {child: [] for child in child_shares}
    taken = set(excluded)
    for _, child, word in candidates:
        if word in taken or len(labels[child]) >= terms_per_label:
            continue
        term = _widened(word, child_shares[child], taken)
        labels[child].append(term)
        taken.update(term.split(" "))
    return labels


def _widened(word: str, shares: pd.Series, taken: set[str]) -> str:
    """The word pair containing ``word`` that covers most of its items, else ``word``."""
    best, best_share = word, _PAIR_COVERAGE * float(shares[word])
    for term, share in shares.items():
        if " " not in term or word not in term.split(" ") or float(share) < best_share:
            continue
        if any(part in taken for part in term.split(" ") if part != word):
            continue
        if float(share) > best_share or (float(share) == best_share and term < best):
            best, best_share = term, float(share)
    return best


def _readable(term: str) -> str:
    return " ".join(word.capitalize() for word in term.split(" "))


def make_unique(descriptions: dict[str, str]) -> dict[str, str]:
    """Suffix ``(2)``, ``(3)``, ... to repeated descriptions, in path order."""
    seen: set[str] = set()
    unique = {}
    for path in sorted(descriptions, key=lambda p: [int(part) for part in p.split(PATH_SEPARATOR)]):
        description = descriptions[path]
        candidate, counter = description, 2
        while candidate in seen:
            candidate = f"{description} ({counter})"
            counter += 1
        seen.add(candidate)
        unique[path] = candidate
    return unique


def leaf_summary(group: pd.DataFrame) -> pd.DataFrame:
    """``applyInPandas`` body per leaf (columns path, traffic): its item weight, traffic and size."""
    return pd.DataFrame(
        {
            "path": [str(group["path"].iloc[0])],
            "weight": [float(item_weight(group["traffic"]).sum())],
            "traffic": [float(group["traffic"].sum())],
            "items": [len(group)],
        }
    )
