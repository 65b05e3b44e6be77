"""featurebus benchmarks: ``python -m bench`` (``make bench``). Not part of the installed package."""
