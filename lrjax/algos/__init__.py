"""Reinforcement-learning algorithms that train learning-rate controllers."""
