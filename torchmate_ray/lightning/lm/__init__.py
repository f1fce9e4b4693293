"""Learners: the default module of ``learner.name``."""

from torchmate_ray.lightning.lm.supervised import SupervisedLearner

__all__ = ["SupervisedLearner"]
