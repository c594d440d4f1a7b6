"""The dataset fingerprint and the plan made from it (nnU-Net's idea, lighter): what spacing, patch and batch the
network trains and predicts at, chosen from the training data and stored with the run (``plan.json``)."""

from cmrseg.planning.fingerprint import Fingerprint, fingerprint_samples
from cmrseg.planning.plan import Plan, make_plan, plan_dataset, write_plan_file

__all__ = ["Fingerprint", "Plan", "fingerprint_samples", "make_plan", "plan_dataset", "write_plan_file"]
