"""``python -m autotimm`` runs the ``autotimm`` command."""

import sys

from autotimm.cli import main

if __name__ == "__main__":
    sys.exit(main())
