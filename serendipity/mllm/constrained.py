"""Constrained decoding of the final answer: a LogitsProcessor over the description trie (``trie.py``).

Only the tokens after the answer marker are constrained; reasoning before it stays free. When a token
budget is given, the marker is forced just early enough that the longest description still fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from serendipity.mllm.trie import DescriptionTrie

__all__ = ["AnswerConstraintProcessor", "DescriptionTrie"]


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
