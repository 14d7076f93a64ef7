"""``python -m digits``: the digits command; how torchrun starts each process (``torchrun -m digits train``)."""

import sys

from digits.cli import main

if __name__ == "__main__":
    sys.exit(main())
