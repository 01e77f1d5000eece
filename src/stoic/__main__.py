"""`python -m stoic` runs the command line."""

import sys

from stoic.cli.entry import main

sys.exit(main())
