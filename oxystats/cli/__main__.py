"""``python -m oxystats.cli``: the ``oxystats`` command."""

from oxystats.cli import main

main()
