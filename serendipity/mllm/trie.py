"""The answer trie: the token sequences of cluster descriptions as they follow the answer marker.

Works with every tokenizer kind a VLM family ships: byte-level BPE (``Ġword``), SentencePiece BPE or
Unigram (``▁word``, with the ``▁`` prepended or not), and tokenizers that merge a newline or a preceding
word with the marker (the marker's token sequences are collected per context, see ``_marker_variants``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.tree import ClusterTree

# Texts the marker may follow in a target; the cluster descriptions (what CoT reasoning ends with) join them.
_MARKER_CONTEXTS = ("", "\n", " ", ".\n", "\n\n")


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    cluster_id: int | None = None
    subtree_clusters: frozenset[int] = frozenset()


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _encode_many(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _eos_ids(tokenizer: Any) -> tuple[int, ...]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; constrained decoding needs one to end answers")
    return tuple(eos) if isinstance(eos, list) else (int(eos),)


def _common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _marker_variants(tokenizer: Any, marker: str, preceding: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """The token sequences that spell the marker after each context (and after each text + newline).

    A variant is what ``context + marker`` tokenises to beyond its common prefix with ``context`` alone,
    so a token merging the newline with the marker (SentencePiece does) stays in the variant.
    """
    contexts = [*_MARKER_CONTEXTS]
    for text in preceding:  # at the start of a text, and after a space (where word tokens carry it)
        contexts.extend((f"{text}\n", f" {text}\n", f" {text} "))
    contexts = list(dict.fromkeys(contexts))
    variants: list[tuple[int, ...]] = []
    with_marker = _encode_many(tokenizer, [context + marker for context in contexts])
    for context_ids, full in zip(_encode_many(tokenizer, contexts), with_marker, strict=True):
        variant = tuple(full[_common_prefix_length(context_ids, full) :])
        if variant and tokenizer.decode(list(variant)).strip().endswith(marker) and variant not in variants:
            variants.append(variant)
    if not variants:
        raise ValueError(f"cannot tokenise the answer marker {marker!r} stably")
    return tuple(variants)


def _check_answers_follow_markers(
    tokenizer: Any,
    trie_tokens: Mapping[int, tuple[int, ...]],
    descriptions: Mapping[int, str],
    variants: tuple[tuple[int, ...], ...],
    marker: str,
    separator: str,
    preceding: Sequence[str],
) -> None:
    """Each answer, after the marker in a whole text, must tokenise to its trie path behind a marker variant.

    SentencePiece may merge a preceding word, the newline, the marker and the answer's first word into one
    token; the answer then has no tokens of its own, and no trie can constrain it.
    """
    cases = [
        (cluster_id, tokens, context)
        for position, (cluster_id, tokens) in enumerate(trie_tokens.items())
        for context in ("", "\n", f" {preceding[position % len(preceding)] if preceding else ''}\n")
    ]
    texts = [f"{context}{marker}{separator}{descriptions[cluster_id]}" for cluster_id, _, context in cases]
    for (cluster_id, tokens, context), full in zip(cases, _encode_many(tokenizer, texts), strict=True):
        head = tuple(full[: len(full) - len(tokens)])
        if tuple(full[len(head) :]) != tokens or not any(head[-len(v) :] == v for v in variants):
            raise ValueError(
                f"after {context + marker!r} the tokenizer merges the marker with cluster {cluster_id}'s "
                f"description {descriptions[cluster_id]!r} ({tokenizer.convert_ids_to_tokens(full)}); "
                f"put a space between the marker and the answer (separator={separator!r} merges)"
            )


class DescriptionTrie:
    """Prefix tree over the token sequences of cluster descriptions as they appear after the marker."""

    def __init__(
        self,
        token_ids_by_cluster: Mapping[int, tuple[int, ...]],
        *,
        marker_variants: tuple[tuple[int, ...], ...],
        forced_marker: tuple[int, ...],
        eos_token_ids: tuple[int, ...],
    ) -> None:
        self.root = _TrieNode()
        self.token_ids_by_cluster = dict(token_ids_by_cluster)
        self.marker_variants = marker_variants
        self.forced_marker = forced_marker
        self.eos_token_ids = eos_token_ids
        owner_by_tokens: dict[tuple[int, ...], int] = {}
        for cluster_id, tokens in self.token_ids_by_cluster.items():
            if tokens in owner_by_tokens:
                raise ValueError(
                    f"clusters {owner_by_tokens[tokens]} and {cluster_id} tokenise alike: {list(tokens)}"
                )
            owner_by_tokens[tokens] = cluster_id
            node = self.root
            for token in tokens:
                node = node.children.setdefault(token, _TrieNode())
            node.cluster_id = cluster_id
        self._fill_subtrees(self.root)
        self.max_length = max((len(t) for t in self.token_ids_by_cluster.values()), default=0)

    @classmethod
    def build(
        cls,
        tokenizer: Any,
        descriptions_by_cluster: Mapping[int, str],
        *,
        marker: str = ANSWER_MARKER,
        separator: str = " ",
        preceding: Sequence[str] | None = None,
    ) -> DescriptionTrie:
        """Tokenise each ``marker + separator + description``; keep the tokens after the marker.

        ``separator`` is what targets put between the marker and the answer (a space, or nothing), so the
        trie holds the tokens the model learned, whether the tokenizer folds the space into the first
        word's token (``Ġword``, ``▁word``) or not. ``preceding``: texts the reasoning may end with before
        the marker (default: the descriptions), for tokenizers that merge the marker with them.
        """
        if not descriptions_by_cluster:
            raise ValueError("no descriptions to build the answer trie from")
        marker_ids = _encode(tokenizer, marker)
        unk = getattr(tokenizer, "unk_token_id", None)
        token_ids: dict[int, tuple[int, ...]] = {}
        for cluster_id, description in descriptions_by_cluster.items():
            full = _encode(tokenizer, f"{marker}{separator}{description}")
            if full[: len(marker_ids)] != marker_ids:
                raise ValueError(
                    f"the marker {marker!r} merges with the description of cluster {cluster_id} "
                    f"({description!r}) when tokenised with {separator!r} between them; use a tokenizer "
                    f"(or a separator) that splits the answer from the marker"
                )
            tokens = tuple(full[len(marker_ids) :])
            if not tokens:
                raise ValueError(
                    f"the description of cluster {cluster_id} tokenises to nothing: {description!r}"
                )
            if unk is not None and unk in tokens:
                raise ValueError(
                    f"cluster {cluster_id}'s description {description!r} has tokens unknown to the tokenizer"
                )
            token_ids[int(cluster_id)] = tokens
        preceding = list(descriptions_by_cluster.values()) if preceding is None else list(preceding)
        variants = _marker_variants(tokenizer, marker, preceding)
        _check_answers_follow_markers(
            tokenizer, token_ids, dict(descriptions_by_cluster), variants, marker, separator, preceding
        )
        return cls(
            token_ids,
            marker_variants=variants,
            forced_marker=tuple(_encode(tokenizer, "\n" + marker)),
            eos_token_ids=_eos_ids(tokenizer),
        )

    @classmethod
    def for_tree(
        cls,
        tokenizer: Any,
        tree: ClusterTree,
        *,
        level: int | None = None,
        marker: str = ANSWER_MARKER,
        separator: str = " ",
    ) -> DescriptionTrie:
        """A trie over the clusters at ``level`` of ``tree`` (all clusters when ``level`` is None)."""
        cluster_ids = sorted(tree.clusters) if level is None else tree.at_level(level)
        # Reasoning ends with any cluster's description (the parent's, in CoT targets), not just these.
        return cls.build(
            tokenizer,
            {c: tree.description(c) for c in cluster_ids},
            marker=marker,
            separator=separator,
            preceding=tree.descriptions(),
        )

    def _fill_subtrees(self, node: _TrieNode) -> frozenset[int]:
        clusters = {node.cluster_id} if node.cluster_id is not None else set()
        for child in node.children.values():
            clusters |= self._fill_subtrees(child)
        node.subtree_clusters = frozenset(clusters)
        return node.subtree_clusters

    @property
    def cluster_ids(self) -> frozenset[int]:
        return self.root.subtree_clusters

    def walk(self, tokens: Sequence[int]) -> _TrieNode | None:
        node: _TrieNode | None = self.root
        for token in tokens:
            node = node.children.get(token) if node is not None else None
            if node is None:
                return None
        return node

    def cluster_for_tokens(self, tokens: Sequence[int]) -> int | None:
        """The cluster whose description is exactly ``tokens`` (a trailing EOS is ignored)."""
        if tokens and tokens[-1] in self.eos_token_ids:
            tokens = tokens[:-1]
        node = self.walk(tokens)
        return node.cluster_id if node is not None else None

    def allowed_next(
        self, tokens: Sequence[int], allowed_clusters: frozenset[int] | None = None
    ) -> list[int]:
        """Token ids that continue ``tokens`` towards an allowed description; EOS only at a complete one."""
        node = self.walk(tokens)
        if node is None:
            return list(self.eos_token_ids)
        if allowed_clusters is None:
            allowed = list(node.children)
            complete = node.cluster_id is not None
        else:
            allowed = [t for t, child in node.children.items() if child.subtree_clusters & allowed_clusters]
            complete = node.cluster_id in allowed_clusters
        return allowed + list(self.eos_token_ids) if complete else allowed
