"""regviz: see regularization work. The package behind the dashboard and the command line."""

import os

# before tensorflow is first imported anywhere: keep its start-up chatter out of the app's logs
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
