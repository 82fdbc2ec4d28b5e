"""``python -m hpcsim``: the same command line as the ``hpcsim`` script."""

import sys

from hpcsim.cli import main

sys.exit(main())
