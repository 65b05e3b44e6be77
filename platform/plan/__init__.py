"""Plans: what applying a workspace spec changes (``diff``), as a JSON document (``document``),
and the objects feature tables derive (``tables``). Pure, below the SDK so the control plane
computes the same plan the CLI shows."""
