"""``python -m pollframe``: the ``pollframe`` command (see :mod:`pollframe.cli`)."""
import sys

from pollframe.cli import main

sys.exit(main())
