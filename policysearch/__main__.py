import sys

from policysearch.cli import main

sys.exit(main())
