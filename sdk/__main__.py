"""``python -m featurebus``."""

import sys

from featurebus.cli import main

# main() returns click's exit code for a command that raised typer.Exit (standalone_mode=False);
# the console script passes it to sys.exit too.
sys.exit(main())
