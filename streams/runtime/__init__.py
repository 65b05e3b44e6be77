"""The native stream engine's runtime: the worker process (``worker``), its per-batch engine
(``engine``), expiry of old tiles (``expiry``) and recomputation from the source log (``rebuild``).

It sits above the platform layer (it consumes, produces and keeps state through it); the pure
kernel it runs (windows, aggregations, tiles, records, transforms) is the rest of
``featurebus.streams`` and is shared with the offline path and the Flink engine.
"""
