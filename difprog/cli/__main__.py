"""`python -m difprog.cli`: the `difprog` command line."""

import sys

try:
    from difprog.cli import main
except KeyboardInterrupt:  # a Ctrl-C while Python imports the command line
    print("difprog: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
