"""Home page: study picker, counts, coverage and what to do next."""

import streamlit as st

from ui.chrome import page_setup

factory, study_id = page_setup("FaceAgree", needs_study=False)
st.write("Facial-emotion AI vs human judgement.")
