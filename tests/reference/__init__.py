"""Independent pandas implementations of the pipeline jobs, used as test oracles."""
