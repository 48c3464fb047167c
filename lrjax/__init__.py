"""lrjax: learning-rate controllers learned with reinforcement learning, as optax transforms."""

__version__ = "0.1.0"
