"""Tools for testing training setups, not for training: fault injection into any task
(:mod:`lrjax.testing.faults`), so a test, or a user checking their own loop, can run training
under NaN and Inf losses and gradients and exploding steps."""

from lrjax.testing.faults import FAULT_KINDS, HUGE_GRAD_FACTOR, FaultyTask, rate_for_episodes

__all__ = ["FAULT_KINDS", "HUGE_GRAD_FACTOR", "FaultyTask", "rate_for_episodes"]
