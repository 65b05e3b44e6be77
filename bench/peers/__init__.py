"""Peer implementations the benchmarks compare featurebus against (some run in their own venvs)."""
