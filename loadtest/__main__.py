"""`python -m liveroom.loadtest SCENARIO ...`"""

import sys

from .cli import main

sys.exit(main())
