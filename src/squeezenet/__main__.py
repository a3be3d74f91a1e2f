"""``python -m squeezenet`` (what ``torchrun -m squeezenet train ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
