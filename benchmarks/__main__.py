import sys

from benchmarks.bench import cli

sys.exit(cli())
