"""Adapters turn a ModelSpec plus verified checkpoint files into a runnable model."""
