import sys

from tokenserver.cli import main

sys.exit(main())
