"""Pure logic of the dashboard (no streamlit): parsing, statistics, models, charts, exports."""
