"""Deleting entities' values: tombstones on the bus, rewritten Parquet files, and a receipt."""
