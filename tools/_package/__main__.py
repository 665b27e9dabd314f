"""``python -m midstream``: the same command as the ``midstream`` script."""

import sys

from midstream.tools.cli.main import main

sys.exit(main())
