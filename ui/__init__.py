"""The app's pages, one file each, and what they share; with app.py the only code that imports streamlit."""
