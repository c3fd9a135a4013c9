"""`python -m sweep.cli ...`: the same as the `sweep` console script."""

from sweep.cli.entry import main

main()
