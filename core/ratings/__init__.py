"""Ratings as values: file layouts and validation, scales, canonical labels, stimulus keys."""
