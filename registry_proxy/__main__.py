import sys

from registry_proxy.cli import main

sys.exit(main())
