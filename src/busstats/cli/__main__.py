"""`python -m busstats.cli`: the `busstats` command."""

import sys

try:
    from busstats.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command's first modules load
    sys.exit(130)

sys.exit(main())
