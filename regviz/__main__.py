"""`python -m regviz ...`: the command line."""

import sys

from regviz.cli import main

sys.exit(main())
