"""Orchestration that uses the database: imports, face stage, inference runs, model catalog, demo.

Pages and the command line call these; the pure packages beside this one never import it.
"""
