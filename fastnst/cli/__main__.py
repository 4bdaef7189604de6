"""``python -m fastnst.cli``: the ``fastnst`` command without the installed script."""

import sys

from fastnst.cli.main import main

sys.exit(main())
