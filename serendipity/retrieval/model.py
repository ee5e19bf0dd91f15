"""SASRec: item embeddings + learned positions + causal self-attention over a user's item sequence.

Sequences are rows of item *indices* (1..num_items; 0 is padding), oldest first and left-padded, so
the last column is always the most recent item and its hidden state is the user's query vector.
Scores are inner products with the same item embedding table (tied input/output embeddings).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from serendipity.io import atomic_directory

MODEL_CONFIG_FILE = "sasrec_config.json"
MODEL_WEIGHTS_FILE = "sasrec.pt"
PADDING_INDEX = 0


@dataclass(frozen=True)
class SASRecConfig:
    num_items: int
    embedding_dim: int = 64
    max_length: int = 20
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley, 2018) with tied item embeddings."""

    def __init__(
        self,
        num_items: int,
        *,
        embedding_dim: int = 64,
        max_length: int = 20,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError(f"embedding_dim={embedding_dim} is not divisible by num_heads={num_heads}")
        self.config = SASRecConfig(num_items, embedding_dim, max_length, num_layers, num_heads, dropout)
        self.item_embedding = nn.Embedding(num_items + 1, embedding_dim, padding_idx=PADDING_INDEX)
        self.position_embedding = nn.Embedding(max_length, embedding_dim)
        self.input_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=embedding_dim,
            nhead=num_heads,
            dim_feedforward=embedding_dim * 2,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(embedding_dim)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PADDING_INDEX].zero_()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position, (batch, length, dim); position t sees items <= t only."""
        length = sequences.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length={self.config.max_length}")
        positions = torch.arange(length, device=sequences.device)
        scale = self.config.embedding_dim**0.5
        hidden = self.item_embedding(sequences) * scale + self.position_embedding(positions)[None]
        padding = sequences == PADDING_INDEX
        hidden = self.input_dropout(hidden) * (~padding).unsqueeze(-1)
        hidden = self.encoder(hidden, mask=self._attention_mask(padding))
        return self.output_norm(hidden)

    def _attention_mask(self, padding: torch.Tensor) -> torch.Tensor:
        """(batch * heads, length, length), True = blocked: future keys and padded keys.

        A padded position still attends to itself, so no row is fully blocked (a NaN softmax would
        leak into real positions through the padded values of the next layer).
        """
        length = padding.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=padding.device).triu(1)
        self_only = torch.eye(length, dtype=torch.bool, device=padding.device)
        blocked = future[None] | (padding[:, None, :] & ~self_only[None])
        return blocked.repeat_interleave(self.config.num_heads, dim=0)

    def query(self, sequences: torch.Tensor) -> torch.Tensor:
        """The query vector of each sequence: the hidden state at its last (most recent) position."""
        return self(sequences)[:, -1]

    def item_vectors(self) -> torch.Tensor:
        """Embeddings of items 1..num_items (row i is item index i + 1)."""
        return self.item_embedding.weight[1:]

    def save(self, directory: str | Path) -> Path:
        """Write config JSON + weights to ``directory`` atomically."""
        with atomic_directory(directory) as tmp:
            (tmp / MODEL_CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
            torch.save(self.state_dict(), tmp / MODEL_WEIGHTS_FILE)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> SASRec:
        directory = Path(directory)
        config_path = directory / MODEL_CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"no SASRec model in {directory}: {MODEL_CONFIG_FILE} is missing")
        config = SASRecConfig(**json.loads(config_path.read_text()))
        model = cls(
            config.num_items,
            embedding_dim=config.embedding_dim,
            max_length=config.max_length,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            dropout=config.dropout,
        )
        state = torch.load(directory / MODEL_WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.eval()
