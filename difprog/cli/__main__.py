"""`python -m difprog.cli`: the `difprog` command line."""

import sys

from difprog.cli import main

sys.exit(main())
