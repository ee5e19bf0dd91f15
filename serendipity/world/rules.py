"""The fixed rules of the synthetic world. They were set once, before any model was trained on it.

Hidden rules
============
Upper-case names below are the fields of :class:`WorldRules` (lower-case there); every value is
saved with the dataset in ``_world/rules.json``.
Notation: v is the context item (the previous item of a session), w the next item, u the user,
c_k(x) the level-k cluster of item x. Mining level L = 3: w is *similar* to v when
c3(w) == c3(v), *serendipitous* when c3(w) != c3(v) and c2(w) == c2(v).

Item latent state (saved in ``_world/items_truth.parquet``):
  * ``cue_cluster`` cue(v): one sibling level-3 cluster of c3(v), uniform over the siblings.
  * ``visual_richness`` r(v) ~ Beta(2, 2): the "visually interesting" score.
  * ``quality`` q(v) ~ Beta(2, 2).
  * ``cue_start``, ``cue_length``: the contiguous window of video frames that shows the cue glyph;
    length = max(1, round(CUE_WINDOW_SHARE * frames)), start uniform.
  * ``popularity``: Zipf weight 1 / rank**ZIPF_EXPONENT over a random permutation of items.

What the media show (see ``serendipity.world.render``):
  * background hue = c1 index; horizontal stripe count = c2 index among its siblings + 1;
    moving foreground shape kind = c3 index among its siblings; shape tint = c4 index.
  * a grey band along the top; inside it, on cue frames only, a glyph: a bright marker cell then
    ceil(log2(siblings)) cells spelling the cue cluster's index among its siblings in binary (bright = 1,
    dark = 0). Glyph contrast = GLYPH_CONTRAST_MIN + (1 - GLYPH_CONTRAST_MIN) * r(v).
  * the thumbnail is a frame from inside the cue window (always shows the cue); a random frame
    shows it with probability cue_length / frames.
  * the title names the cue cluster (its last description word) with probability TITLE_HINT_PROB,
    and a wrong sibling (neither the cue nor its own cluster; only when one exists) with
    probability TITLE_DECOY_PROB, in the same words: "... (ft. <name>)".

User latent state (``_world/users_truth.parquet``):
  * openness o(u) ~ Beta(2, 2); activity ~ LogNormal(0, 1) (share of the interactions).
  * interests: 1..MAX_FAVOURITE_L2 (uniform) favourite level-2 clusters, drawn without replacement
    with odds sqrt(cluster popularity mass), with Dirichlet(1) weights.
    affinity(u, w) = L2_AFFINITY_WEIGHT * a2 + (1 - L2_AFFINITY_WEIGHT) * a1, where a2 is the
    weight of c2(w) and a1 the summed weight of c1(w), each divided by the user's largest weight.

Satisfaction (``UserSimulator.satisfaction``): a draw from Beta(m * k, (1 - m) * k) with
k = SATISFACTION_CONCENTRATION and mean
m = clip(BASE + QUALITY_WEIGHT * (q(w) - 0.5) + AFFINITY_WEIGHT * affinity(u, w) + relation,
         MEAN_MIN, MEAN_MAX):
  * no context:                        relation = 0
  * similar (same c3):                 relation = SIMILAR_BONUS * (1 - o(u))
  * serendipitous, c3(w) == cue(v):    relation = CUE_BONUS * strength(v) * o(u),
                                       strength(v) = CUE_RICHNESS_FLOOR + (1 - CUE_RICHNESS_FLOOR) * r(v)
  * serendipitous, another sibling:    relation = OTHER_SIBLING_BONUS
  * different level-2 cluster:         relation = FAR_JUMP_BONUS
  On average over users a cue-matching jump beats a similar one (E[o] = 0.5), but closed users
  (small o) still prefer similar items.

Logging policy (the old recommender; it does not know the cue):
  * users' interaction counts ~ Multinomial(interactions, activity share); sessions have geometric
    length with mean SESSION_MEAN_LENGTH; items inside a session are SESSION_ITEM_GAP_MIN_S +
    Exp(SESSION_ITEM_GAP_MEAN_S) seconds apart (capped at SESSION_ITEM_GAP_MAX_S), sessions at least
    SESSION_GAP_MIN_H hours apart, spread over the simulated days.
  * the first item of a session follows the user's interests; afterwards the next item is from
    the same level-3 cluster with probability P_SAME_L3, from a uniformly chosen sibling level-3
    cluster with probability P_SIBLING_L3, otherwise from the user's interests (a favourite level-2
    cluster, then a level-3 child by its popularity mass). Within a cluster the item is drawn by
    popularity among items already created at that time.
  * catalogue: CATALOG_AT_START_SHARE of the items exist before the period starts (created over
    the PRE_PERIOD_DAYS before it), the others are created uniformly during the period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class WorldRules:
    """Every constant of the hidden rules (documented in the module docstring)."""

    period_start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    zipf_exponent: float = 1.0
    catalog_at_start_share: float = 0.7
    pre_period_days: float = 90.0
    cue_window_share: float = 0.25
    glyph_contrast_min: float = 0.35
    title_hint_prob: float = 0.15
    title_decoy_prob: float = 0.05
    caption_prob: float = 0.7
    max_favourite_l2: int = 3
    l2_affinity_weight: float = 0.7
    base: float = 0.40
    quality_weight: float = 0.20
    affinity_weight: float = 0.20
    similar_bonus: float = 0.10
    cue_bonus: float = 0.35
    cue_richness_floor: float = 0.25
    other_sibling_bonus: float = 0.0
    far_jump_bonus: float = -0.05
    mean_min: float = 0.02
    mean_max: float = 0.98
    satisfaction_concentration: float = 8.0
    session_mean_length: float = 8.0
    session_item_gap_min_s: float = 30.0
    session_item_gap_mean_s: float = 150.0
    session_item_gap_max_s: float = 1200.0
    session_gap_min_h: float = 2.0
    p_same_l3: float = 0.55
    p_sibling_l3: float = 0.25

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["period_start"] = self.period_start.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldRules:
        values = dict(data)
        values["period_start"] = datetime.fromisoformat(values["period_start"])
        return cls(**values)
