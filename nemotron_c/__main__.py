"""python -m nemotron_c: the command line (see nemotron_c.cli)."""
import sys

from .cli import main

sys.exit(main(prog="python -m nemotron_c"))
