"""``python -m oxystats``: the ``oxystats`` command (needs the ``cli`` extra)."""

from oxystats.cli import main

if __name__ == "__main__":
    main()
