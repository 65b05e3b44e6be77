"""Local file helpers shared by every platform package (its own package, below them all, so the
Kafka runtime, the stores and the configuration can share it without importing each other)."""
