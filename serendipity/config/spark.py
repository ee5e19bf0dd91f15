"""The ``spark:`` section: the Spark session of the Spark jobs."""

from __future__ import annotations

from pydantic import Field

from serendipity.config.base import Section


class SparkConfig(Section):
    master: str = "local[*]"
    app_name: str = "serendipity"
    shuffle_partitions: int = Field(8, ge=1)
    driver_memory: str = "4g"
    extra_conf: dict[str, str] = Field(default_factory=dict)
