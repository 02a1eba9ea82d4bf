"""`python -m flyte_lab` is `flyte-lab`."""

import sys

from flyte_lab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
