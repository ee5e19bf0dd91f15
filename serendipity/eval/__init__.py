"""Evaluation: the simulated live experiment (arms, bandit, simulation, metrics) and its report.

``serendipity.eval.experiment.run_live_experiment(config)`` runs the experiment end to end;
``ray_jobs/evaluate.py`` is its job entry point.
Its ``experiment.json`` is a typed ``serendipity.eval.results.ExperimentSummary``, written and read with
``ExperimentSummary.write`` / ``ExperimentSummary.read`` (the report, its claims and figures read attributes).
The offline replay's ``replay.json`` is a ``serendipity.eval.replay_results.ReplayReport``; the report's
sections and ``report.json`` are the types of ``serendipity.eval.report_data`` (``EvaluationReport``).
"""
