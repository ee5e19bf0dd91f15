"""The synthetic short-video world: taxonomy, items with media, users, logs and the user simulator.

The hidden rules (what makes serendipitous jumps satisfying, and what the media show) are fixed and
documented in :mod:`serendipity.world.rules`.
"""

from serendipity.world.generate import WorldSummary, generate_world
from serendipity.world.rules import WorldRules
from serendipity.world.simulator import Relation, UserSimulator

__all__ = ["Relation", "UserSimulator", "WorldRules", "WorldSummary", "generate_world"]
