"""``python -m transformer_conformance``: see ``transformer_conformance.cli``."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "run" and "--in-process" not in sys.argv:
    from transformer_conformance.forkserver import prestart, targets_in_argv

    prestart(targets_in_argv(sys.argv))  # the fork server imports torch while this process does

from transformer_conformance.cli import main

if __name__ == "__main__":
    sys.exit(main())
