"""regviz: move the sliders, watch regularization work. The app's pages, one file each, are in ui/."""

import streamlit as st

st.set_page_config(page_title="regviz: see regularization work", page_icon="📉", layout="wide")

st.navigation(
    [
        st.Page("ui/explore.py", title="Explore", icon=":material/tune:", default=True),
        st.Page("ui/remedies.py", title="Four remedies", icon=":material/grid_view:", url_path="remedies"),
        st.Page("ui/sweep.py", title="Sweep", icon=":material/grid_on:", url_path="sweep"),
        st.Page("ui/yourdata.py", title="Your data", icon=":material/upload_file:", url_path="data"),
    ]
).run()
