"""``python -m lbd`` runs the ``lbd`` command."""

import sys

from lbd.cli import main

sys.exit(main())
