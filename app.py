"""Entry point (``streamlit run app.py``): the page list with titles; the pages live in pages/.

``st.navigation`` names each page (the first entry reads "Home", not "app") and turns off
Streamlit's automatic discovery of pages/.
"""

import streamlit as st

from ui.analysis_ahead import prepare_analysis
from ui.chrome import STUDY_KEY, sessions

PAGES = [
    ("pages/0_Home.py", "Home", ":material/home:"),
    ("pages/1_Stimuli.py", "Stimuli", ":material/photo_library:"),
    ("pages/2_Ratings.py", "Ratings", ":material/table_view:"),
    ("pages/3_Models.py", "Models", ":material/memory:"),
    ("pages/4_Agreement.py", "Agreement", ":material/handshake:"),
    ("pages/5_Confusion.py", "Confusion", ":material/grid_on:"),
    ("pages/6_Circumplex.py", "Circumplex", ":material/radar:"),
    ("pages/7_Model_diversity.py", "Model diversity", ":material/hub:"),
    ("pages/8_Across_pipelines.py", "Across pipelines", ":material/compare_arrows:"),
    ("pages/9_Disagreements.py", "Disagreements", ":material/report:"),
]

st.navigation([
    st.Page(path, title=title, icon=icon, default=index == 0)
    for index, (path, title, icon) in enumerate(PAGES)
]).run()
# Reached only when the page rendered to its end (a login gate or a hint stops before): the
# current study's analysis is computed in the background while the user reads this page.
prepare_analysis(sessions(), st.session_state.get(STUDY_KEY))
