"""Materialization and compaction jobs, tracked on the bus.

The job records and their state machine live in ``featurebus.schemas.jobs`` (pure, an on-wire
format like the specs); where they are stored in ``featurebus.platform.registry.jobs`` (the job
store Protocol, its in-memory twin and the Kafka backend, part of the registry). Here:
``schedule`` (which batch periods are due, pure), ``runner`` (``featurebus jobs run``), ``execute``
(what each kind of job does) and ``client`` (submit, list, cancel, retry, wait: what the CLI and
the SDK call).

Import the submodules directly; this package imports nothing.
"""
