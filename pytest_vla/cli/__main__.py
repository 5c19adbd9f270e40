"""``python -m pytest_vla.cli``: the ``pytest-vla`` command, for an environment whose scripts are not on PATH."""

import sys

from pytest_vla.cli import main

sys.exit(main())
