"""``python -m oxystats.emulator``: serve an emulated Dashboard API on 127.0.0.1."""

import sys

from oxystats.emulator._command import main

sys.exit(main())
