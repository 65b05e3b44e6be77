"""The offline store: source records replayed from Kafka into Parquet (``store``,
``materializer``, ``compaction``) and which workspace's data a source reads (``locations``).
Training sets over it are ``featurebus.platform.training``.

Import the submodules directly; this package imports nothing so that reading the store does not
pull in the Kafka client.
"""
