"""`python -m gpulens`."""

import sys

from gpulens.cli import main

sys.exit(main())
