"""Workflows that combine the layers below: export (:mod:`~cmrseg.workflows.export`), ensembles
(:mod:`~cmrseg.workflows.ensemble`), cross-validation (:mod:`~cmrseg.workflows.crossval`), sweeps
(:mod:`~cmrseg.workflows.sweep`), HTML reports (:mod:`~cmrseg.workflows.report`) and the Kaggle CSV
(:mod:`~cmrseg.workflows.submission`)."""
