"""`python -m service.cli`: the `peerway` command."""

import sys

from service.cli import main

sys.exit(main())
