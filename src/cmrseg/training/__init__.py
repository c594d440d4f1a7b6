"""Training: the seeded, resumable trainer (:mod:`~cmrseg.training.trainer`), losses
(:mod:`~cmrseg.training.losses`) and optimisers with their schedules (:mod:`~cmrseg.training.optim`)."""
