"""Constrained decoding of the final answer: a token trie over cluster descriptions and a LogitsProcessor.

Only the tokens after the answer marker are constrained; reasoning before it stays free. When a token
budget is given, the marker is forced just early enough that the longest description still fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from serendipity.mllm.constants import ANSWER_MARKER
from serendipity.tree import ClusterTree

# Contexts the marker may follow in a target text; each gives the marker's own token sequence there.
_MARKER_CONTEXTS = ("", "\n", " ", ".\n")


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    cluster_id: int | None = None
    subtree_clusters: frozenset[int] = frozenset()


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_ids(tokenizer: Any) -> tuple[int, ...]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; constrained decoding needs one to end answers")
    return tuple(eos) if isinstance(eos, list) else (int(eos),)


def _marker_variants(tokenizer: Any, marker: str) -> tuple[tuple[int, ...], ...]:
    variants: list[tuple[int, ...]] = []
    for context in _MARKER_CONTEXTS:
        context_ids = _encode(tokenizer, context) if context else []
        full = _encode(tokenizer, context + marker)
        if full[: len(context_ids)] == context_ids and len(full) > len(context_ids):
            variant = tuple(full[len(context_ids) :])
            if variant not in variants:
                variants.append(variant)
    if not variants:
        raise ValueError(f"cannot tokenise the answer marker {marker!r} stably")
    return tuple(variants)


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
    ) -> DescriptionTrie:
        """Tokenise each description as ``marker + " " + description``; keep the tokens after the marker."""
        if not descriptions_by_cluster:
            raise ValueError("no descriptions to build the answer trie from")
        marker_ids = _encode(tokenizer, marker)
        unk = getattr(tokenizer, "unk_token_id", None)
        token_ids: dict[int, tuple[int, ...]] = {}
        for cluster_id, description in descriptions_by_cluster.items():
            full = _encode(tokenizer, f"{marker} {description}")
            if full[: len(marker_ids)] != marker_ids:
                raise ValueError(
                    f"the marker {marker!r} merges with the description of cluster {cluster_id} "
                    f"({description!r}) when tokenised; use a tokenizer that splits at the space after it"
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
        return cls(
            token_ids,
            marker_variants=_marker_variants(tokenizer, marker),
            forced_marker=tuple(_encode(tokenizer, "\n" + marker)),
            eos_token_ids=_eos_ids(tokenizer),
        )

    @classmethod
    def for_tree(
        cls, tokenizer: Any, tree: ClusterTree, *, level: int | None = None, marker: str = ANSWER_MARKER
    ) -> DescriptionTrie:
        """A trie over the clusters at ``level`` of ``tree`` (all clusters when ``level`` is None)."""
        cluster_ids = sorted(tree.clusters) if level is None else tree.at_level(level)
        return cls.build(tokenizer, {c: tree.description(c) for c in cluster_ids}, marker=marker)

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


class AnswerConstraintProcessor(LogitsProcessor):
    """Masks, per beam row, every token that does not continue an allowed description after the marker.

    Before the marker the reasoning is free except that EOS is blocked (every output must end in an
    answer); with ``max_new_tokens`` the marker is forced once only the room for the longest answer is left.
    ``candidates[i]`` restricts example ``i`` (rows are grouped by example, as ``generate`` expands them).
    """

    supports_continuous_batching = False

    def __init__(
        self,
        trie: DescriptionTrie,
        *,
        candidates: Sequence[Sequence[int]] | None = None,
        prompt_length: int | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        self.trie = trie
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.candidate_sets: list[frozenset[int]] | None = None
        if candidates is not None:
            self.candidate_sets = []
            for index, cluster_ids in enumerate(candidates):
                usable = frozenset(int(c) for c in cluster_ids) & trie.cluster_ids
                if not usable:
                    raise ValueError(
                        f"example {index} has no candidate cluster among the trie's descriptions"
                    )
                self.candidate_sets.append(usable)
        answer_room = len(trie.forced_marker) + trie.max_length + 1
        if max_new_tokens is not None and max_new_tokens < answer_room:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for the marker, the longest description "
                f"({trie.max_length} tokens) and EOS: use at least {answer_room}"
            )
        self._answer_room = answer_room
        self._allowed_cache: dict[tuple[frozenset[int] | None, tuple[int, ...]], list[int]] = {}

    def answer_starts(self, input_ids: torch.Tensor, prompt_length: int) -> torch.Tensor:
        """Per row, where the answer begins in the generated tokens (after the last marker), or -1."""
        generated = input_ids[:, prompt_length:]
        starts = torch.full((input_ids.shape[0],), -1, dtype=torch.long, device=input_ids.device)
        prompt_has_marker = torch.zeros_like(starts, dtype=torch.bool)
        for variant in self.trie.marker_variants:
            width = len(variant)
            pattern = torch.tensor(variant, dtype=input_ids.dtype, device=input_ids.device)
            if prompt_length >= width:
                tail = input_ids[:, prompt_length - width : prompt_length]
                prompt_has_marker |= (tail == pattern).all(dim=1)
            if generated.shape[1] >= width:
                matches = (generated.unfold(1, width, 1) == pattern).all(dim=2)
                ends = torch.arange(width, generated.shape[1] + 1, device=input_ids.device)
                starts = torch.maximum(starts, torch.where(matches, ends, -1).max(dim=1).values)
        return torch.where((starts < 0) & prompt_has_marker, 0, starts)

    def _allowed(self, row_key: frozenset[int] | None, answer: tuple[int, ...]) -> list[int]:
        key = (row_key, answer)
        allowed = self._allowed_cache.get(key)
        if allowed is None:
            allowed = self.trie.allowed_next(answer, row_key)
            self._allowed_cache[key] = allowed
        return allowed

    def _forced_marker_token(self, generated: list[int]) -> int:
        marker = self.trie.forced_marker
        for done in range(min(len(marker) - 1, len(generated)), 0, -1):
            if generated[-done:] == list(marker[:done]):
                return marker[done]
        return marker[0]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        rows = input_ids.shape[0]
        row_keys: list[frozenset[int] | None] = [None] * rows
        if self.candidate_sets is not None:
            if rows % len(self.candidate_sets):
                raise ValueError(f"{rows} beam rows do not divide among {len(self.candidate_sets)} examples")
            per_example = rows // len(self.candidate_sets)
            row_keys = [self.candidate_sets[row // per_example] for row in range(rows)]
        generated_length = input_ids.shape[1] - self.prompt_length
        must_force = (
            self.max_new_tokens is not None and self.max_new_tokens - generated_length <= self._answer_room
        )
        eos = torch.tensor(self.trie.eos_token_ids, device=input_ids.device)
        finished = torch.isin(input_ids[:, self.prompt_length :], eos).any(dim=1).tolist()
        starts = self.answer_starts(input_ids, self.prompt_length).tolist()
        generated_rows: list[list[int]] | None = None

        free_rows: list[int] = []
        constrained_rows: list[int] = []
        allowed_rows: list[int] = []
        allowed_ids: list[int] = []
        for row, start in enumerate(starts):
            if finished[row]:
                continue
            if start < 0 and not must_force:
                free_rows.append(row)
                continue
            if generated_rows is None:
                generated_rows = input_ids[:, self.prompt_length :].tolist()
            generated = generated_rows[row]
            if start < 0:
                allowed = [self._forced_marker_token(generated)]
            else:
                allowed = self._allowed(row_keys[row], tuple(generated[start:]))
            constrained_rows.append(row)
            allowed_rows.extend([row] * len(allowed))
            allowed_ids.extend(allowed)

        blocked = torch.zeros_like(scores, dtype=torch.bool)
        if free_rows:
            blocked[torch.tensor(free_rows, device=scores.device)[:, None], eos[None, :]] = True
        if constrained_rows:
            blocked[torch.tensor(constrained_rows, device=scores.device)] = True
            blocked[
                torch.tensor(allowed_rows, device=scores.device),
                torch.tensor(allowed_ids, device=scores.device),
            ] = False
        return scores.masked_fill(blocked, -float("inf"))
