import sys

from policysearch.cli.main import main

sys.exit(main())
