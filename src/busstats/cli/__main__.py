"""`python -m busstats.cli`: the `busstats` command."""

import sys

from busstats.cli.main import main

sys.exit(main())
