"""What the app's server adds to Streamlit's own (the pages themselves are in the top-level ui/)."""
