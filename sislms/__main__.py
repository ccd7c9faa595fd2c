"""``python -m sislms``: the command line (how the supervisor runs its children)."""

from sislms.cli import main

main()
