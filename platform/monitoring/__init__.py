"""Monitoring: alert rules and their state machine, drift and data-quality statistics, and the
channels alerts are delivered through. Pure logic lives apart from I/O: ``rules``, ``alerts``,
``drift`` and ``quality`` compute; ``state_store`` and ``channels`` talk to Kafka, SMTP and HTTP."""
