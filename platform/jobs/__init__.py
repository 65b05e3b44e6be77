"""Materialization and compaction jobs, tracked on the bus.

``model`` (job records and their state machine, pure), ``store`` (the job store Protocol, its
in-memory twin and the Kafka backend), ``schedule`` (which batch periods are due, pure),
``compaction`` (merging the offline store's small files), ``runner`` (``featurebus jobs run``)
and ``client`` (submit, list, cancel, retry, wait: what the CLI and the SDK call).

Import the submodules directly; this package imports nothing.
"""
