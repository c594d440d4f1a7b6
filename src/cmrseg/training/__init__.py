"""Training: ``train()`` of a run folder (:mod:`~cmrseg.training.trainer`), the seeded, resumable epochs of one
process (:mod:`~cmrseg.training.loop`), one CPU training split over processes (:mod:`~cmrseg.training.parallel`),
losses (:mod:`~cmrseg.training.losses`) and optimisers with their schedules (:mod:`~cmrseg.training.optim`)."""
