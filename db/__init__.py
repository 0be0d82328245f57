"""Persistence layer: engine factory, typed models, queries and migrations."""
