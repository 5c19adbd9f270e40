"""``python -m pytest_vla.cli``: the ``pytest-vla`` command, for an environment whose scripts are not on PATH."""

import sys

from pytest_vla.cli import main

if __name__ == "__main__":  # importing the module (pkgutil.walk_packages does) runs nothing
    sys.exit(main())
