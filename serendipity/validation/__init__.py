"""Dataset validation against the data contract: usable rows, quarantined rows and a report.

The rules (:mod:`.rules`) are engine-agnostic; this package is the pandas engine and the Spark
validate job (``spark_jobs/validate.py``) evaluates the same rules at scale, so both write identical
outputs. Modules: :mod:`.rules` (checks and reason texts), :mod:`.table` (reading, casting, row
flags), :mod:`.checks` (tree, items and interactions rules), :mod:`.text` (title and text length limits),
:mod:`.media` (media path checks), :mod:`.media_probe` (opening a file within the limits, in a child
process), :mod:`.report` (problems and counts), :mod:`.dataset` (a whole dataset directory in and out).
The limits are ``PipelineConfig.limits`` (:class:`serendipity.config.InputLimitsConfig`).
"""

from serendipity.validation.dataset import (
    MEDIA_QUARANTINE_FILE,
    QUARANTINE_DIR,
    REPORT_FILE,
    ValidationResult,
    validate_dataset,
    validate_to,
    write_validation,
)
from serendipity.validation.report import FileCounts, Problem, ValidationReport

__all__ = [
    "MEDIA_QUARANTINE_FILE",
    "QUARANTINE_DIR",
    "REPORT_FILE",
    "FileCounts",
    "Problem",
    "ValidationReport",
    "ValidationResult",
    "validate_dataset",
    "validate_to",
    "write_validation",
]
