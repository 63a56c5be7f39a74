"""``python -m piwheels_build.admin``: see ``request``."""

import sys

from .request import main

sys.exit(main())
