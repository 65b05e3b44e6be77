"""``python -m featurebus``."""

from featurebus.cli import main

main()
