"""The offline store: source records replayed from Kafka into Parquet (``store``,
``materializer``) and point-in-time correct training sets computed from them (``training``).

Import the submodules directly; this package imports nothing so that reading the store does not
pull in the Kafka client.
"""
