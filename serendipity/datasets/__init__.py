"""Adapters from real public datasets and a user's own CSV/Parquet files into the data contract."""

from serendipity.datasets.amazon import ingest_amazon
from serendipity.datasets.common import IngestError, IngestSummary
from serendipity.datasets.generic import ingest_generic
from serendipity.datasets.kuairec import ingest_kuairec
from serendipity.datasets.mapping import GenericMapping, load_mapping
from serendipity.datasets.movielens import ingest_movielens

__all__ = [
    "GenericMapping",
    "IngestError",
    "IngestSummary",
    "ingest_amazon",
    "ingest_generic",
    "ingest_kuairec",
    "ingest_movielens",
    "load_mapping",
]
