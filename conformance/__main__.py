"""``python -m transformer_conformance``: see ``transformer_conformance.cli``."""

import sys

from transformer_conformance.cli import main

if __name__ == "__main__":
    sys.exit(main())
