"""regviz: move the sliders, watch regularization work. The app's pages, one file each, are in ui/.

`streamlit run app.py` finds `app` below and serves this same file as the app's script through it (st.App):
Streamlit's own server plus one middleware, regviz/ui/index_hint.py (no 404s when a page is opened by its
link). Run as the script (also by AppTest), this file is __main__ and draws the pages."""

import streamlit as st

if __name__ == "__main__":
    st.set_page_config(page_title="regviz: see regularization work", page_icon="📉", layout="wide")

    st.navigation(
        [
            st.Page("ui/explore.py", title="Explore", icon=":material/tune:", default=True),
            st.Page(
                "ui/remedies.py", title="Four remedies", icon=":material/grid_view:", url_path="remedies"
            ),
            st.Page("ui/sweep.py", title="Sweep", icon=":material/grid_on:", url_path="sweep"),
            st.Page("ui/yourdata.py", title="Your data", icon=":material/upload_file:", url_path="data"),
        ]
    ).run()
elif hasattr(st, "App"):  # imported by `streamlit run` as the server; without st.App, no hint and no harm
    from starlette.middleware import Middleware

    from regviz.ui.index_hint import IndexHint

    app = st.App(__file__, middleware=[Middleware(IndexHint)])
