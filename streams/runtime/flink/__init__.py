"""The Flink engine: the native engine's batch step (``streams.runtime.engine``, and through it
the pure kernel) run inside a PyFlink job, with Flink's keyed RocksDB state and a transactional
Kafka sink. ``job`` builds the job, ``shard_function`` is its keyed operator, ``state`` adapts
Flink's keyed state and output to the engine's store and sink."""
