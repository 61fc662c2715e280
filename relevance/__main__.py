"""``python -m relevance``: the command line (also what ``torchrun -m relevance`` runs)."""

import sys

from relevance.cli import main

sys.exit(main())
