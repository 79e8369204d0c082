import sys

from modl.cli import main

sys.exit(main())
