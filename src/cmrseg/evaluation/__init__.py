"""Evaluating runs and submissions: :mod:`~cmrseg.evaluation.slice_scoring` (a run on labeled slices, a submission
CSV, the text tables; ``evaluate_run`` also dispatches to volumes) and :mod:`~cmrseg.evaluation.volume_scoring`
(a run on labeled volumes: per-volume 3D metrics, ED/ES summaries, slice positions, clinical indices)."""

from cmrseg.evaluation.slice_scoring import (evaluate_run, format_table, partial_text, score_folder, score_samples,
                                      score_submission, validation_samples)

__all__ = ["evaluate_run", "format_table", "partial_text", "score_folder", "score_samples", "score_submission",
           "validation_samples"]
