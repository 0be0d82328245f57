"""Streamlit widgets and page chrome shared by several pages (UI layer only)."""
