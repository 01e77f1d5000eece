"""`python -m stoic` runs the command line."""

import sys

from stoic.cli.app import main

sys.exit(main())
