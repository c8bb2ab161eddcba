"""python -m pgjobs: the command line."""

from pgjobs.cli import main

main()
