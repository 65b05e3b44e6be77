"""Monitoring of served features: drift and live parity over the logged requests (read from the
offline store, recomputed through the training-set path), and their reports. Apart from
``platform.monitoring`` (the pure statistics and alert core), which the offline materializer uses."""
