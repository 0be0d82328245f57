"""Turning tidy tables into charts (alt.Chart) and downloadable files."""
