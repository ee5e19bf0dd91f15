"""Unique, readable cluster descriptions: each cluster is named by the terms that represent its members.

A cluster is named by the path of its ancestors' labels plus its own, e.g. ``"Comedy / Romance / Paris"``.
A term's *coverage* ``p(t|c)`` is the share of the cluster's item weight (``1 + log1p(traffic)``, so
popular items shape the name more) carrying the term. Labels are chosen among siblings (the children of
one parent), greedily, best score first:

* level 1: the dominant theme, i.e. the term of highest coverage;
* deeper levels: class-based TF-IDF among the siblings, ``p(t|c) * log(1 + A / f(t))`` with ``A`` the
  siblings' average item weight and ``f(t)`` the item weight carrying ``t`` across the siblings
  (frequent terms win; a term is lifted a little when few siblings carry it).

At every level, terms more common in the cluster than among its siblings together rank before the
others (a cluster takes a word its siblings have more of only when no over-represented word is left;
at level 1 the siblings together are the catalogue, so a word in every item comes last). Stop words
(sklearn's English list plus a few domain words) and numbers are never terms. Siblings never share a
label term and a label never repeats an ancestor's term, so paths are unique by construction; a final
pass still suffixes any duplicate.

Clusters are identified by their path of child indices, written ``"0.2.1"`` (level = number of parts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

PATH_SEPARATOR = "."
DESCRIPTION_SEPARATOR = " / "
_TERM_PATTERN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_EXTRA_STOP_WORDS = frozenset({"genres", "genre", "listed", "tags", "tag", "title", "video", "movie", "film"})
SMOOTHING = 1e-4
_NO_TERMS = pd.Series(dtype=float)
_PHRASE_BREAK = re.compile(r"[.,;:|!?()\[\]/#\"]+")
# a word pair replaces its word when it covers this share of the word's items (e.g. "High School")
PAIR_COVERAGE = 0.8
# scores and shares are compared at this many decimals: sums of the same item weights taken in another
# order (Spark's partial sums) differ in the last bits, and exact ties are broken by the term instead
SCORE_DECIMALS = 12
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
    return describe_levels(
        lambda level: _rolled_up(term_weights, ["path", "term"], level),
        leaf_weights,
        num_levels,
        terms_per_label,
    )


def describe_levels(
    cluster_terms: Callable[[int], pd.DataFrame],
    leaf_weights: pd.DataFrame,
    num_levels: int,
    terms_per_label: int = 1,
) -> dict[str, str]:
    """:func:`describe_tree` from each level's (cluster path, term, weight) rows, ``cluster_terms(level)``.

    The rows may be limited to those that can decide a name: per cluster, its best single words by the
    labelling's order (:func:`label_candidates_needed` of them), every sibling's weight of those words
    and the word pairs that may widen them (``spark_jobs/tree_terms.py`` selects them in Spark).
    """
    descriptions: dict[str, str] = {}
    used_terms: dict[str, frozenset[str]] = {"": frozenset()}
    for level in range(1, num_levels + 1):
        cluster_weight = _rolled_up(leaf_weights, ["path"], level).set_index("path")["weight"]
        level_terms = cluster_terms(level).sort_values(["path", "term"], ignore_index=True)
        coverage_by_path = {
            path: group.set_index("term")["weight"] / max(float(cluster_weight[path]), 1e-12)
            for path, group in level_terms.groupby("path", sort=True)
        }
        for parent, siblings in _siblings(list(cluster_weight.index), level).items():
            classes = {
                child: TermClass(float(cluster_weight[child]), coverage_by_path.get(child, _NO_TERMS))
                for child in siblings
            }
            scores = (
                {child: c.coverage for child, c in classes.items()} if level == 1 else class_tfidf(classes)
            )
            labels = _sibling_labels(scores, classes, used_terms[parent], terms_per_label)
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
    return descriptions


def label_candidates_needed(level: int, siblings: int, terms_per_label: int) -> int:
    """How many of a cluster's single-word candidates, in the labelling's order, can decide its label.

    :func:`_sibling_labels` skips a candidate only when its word is taken: by the ancestors' labels
    (``level - 1`` labels), the other siblings' labels or the cluster's own, each label up to
    ``terms_per_label`` terms of up to two words. So the label comes from its first
    ``2 * terms_per_label * (level + siblings - 1)`` candidates.
    """
    return 2 * terms_per_label * (level + siblings - 1)


def _siblings(paths: list[str], level: int) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted(paths, key=lambda p: [int(part) for part in p.split(PATH_SEPARATOR)]):
        groups.setdefault(prefix(path, level - 1), []).append(path)
    return groups


@dataclass(frozen=True)
class TermClass:
    """One cluster among its siblings: its item weight and each term's coverage (share of that weight)."""

    weight: float
    coverage: pd.Series


def _carrying(classes: dict[str, TermClass]) -> pd.Series:
    """Item weight carrying each term, summed over the siblings."""
    return pd.concat([c.coverage * c.weight for c in classes.values()], axis=1).sum(axis=1)


def class_tfidf(classes: dict[str, TermClass]) -> dict[str, pd.Series]:
    """Class-based TF-IDF of each sibling's terms: ``coverage(t, c) * log(1 + A / f(t))``.

    ``A`` is the siblings' average item weight and ``f(t)`` the item weight carrying ``t`` across the
    siblings: a term every sibling carries fully still scores ``log(1 + 1/k)``, a term of one sibling
    only scores about ``coverage * log(1 + 1/coverage)``; frequent terms win over rare ones.
    """
    average = sum(c.weight for c in classes.values()) / len(classes)
    carrying = _carrying(classes).clip(lower=1e-12)
    return {
        child: c.coverage * np.log1p(average / carrying.reindex(c.coverage.index))
        for child, c in classes.items()
    }


def _over_represented(classes: dict[str, TermClass]) -> dict[str, set[str]]:
    """Per sibling, the terms whose coverage exceeds their coverage of all the siblings together."""
    together = _carrying(classes) / max(sum(c.weight for c in classes.values()), 1e-12)
    return {
        child: set(c.coverage.index[c.coverage > together.reindex(c.coverage.index) + SMOOTHING])
        for child, c in classes.items()
    }


def _sibling_labels(
    scores: dict[str, pd.Series],
    classes: dict[str, TermClass],
    excluded: frozenset[str],
    terms_per_label: int,
) -> dict[str, list[str]]:
    """Greedy: over-represented terms first, then the best (score, child, word); a word names one
    sibling only.

    A chosen word is widened to the word pair holding it when the pair covers most of its items.
    ``excluded`` holds the words of the ancestors' labels.
    """
    over = _over_represented(classes)
    candidates = [
        (term not in over[child], -round(float(score), SCORE_DECIMALS), child, term)
        for child, child_scores in scores.items()
        for term, score in child_scores.items()
        if " " not in term and term not in excluded and score > 0
    ]
    candidates.sort()
    labels: dict[str, list[str]] = {child: [] for child in classes}
    taken = set(excluded)
    for _, _, child, word in candidates:
        if word in taken or len(labels[child]) >= terms_per_label:
            continue
        term = _widened(word, classes[child].coverage, taken)
        labels[child].append(term)
        taken.update(term.split(" "))
    return labels


def _widened(word: str, shares: pd.Series, taken: set[str]) -> str:
    """The word pair containing ``word`` that covers most of its items, else ``word``."""
    best, best_share = word, round(PAIR_COVERAGE * float(shares[word]), SCORE_DECIMALS)
    for term, raw_share in shares.items():
        share = round(float(raw_share), SCORE_DECIMALS)
        if " " not in term or word not in term.split(" ") or share < best_share:
            continue
        if any(part in taken for part in term.split(" ") if part != word):
            continue
        if share > best_share or (share == best_share and term < best):
            best, best_share = term, share
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
