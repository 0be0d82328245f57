"""Logic of the dashboard (no streamlit), in stages: io, ratings, faces, models, agreement and
reporting are pure; workflows orchestrate them with the database; cli is the command line."""
