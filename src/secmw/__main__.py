"""``python -m secmw`` runs the command line."""

import sys

from secmw.cli import main

sys.exit(main())
