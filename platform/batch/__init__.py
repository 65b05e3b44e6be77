"""Batch feature views: reading batch sources (``sources``), computing a view over a time range
(``compute``, pure), its offline rows (``offline``) and online tiles (``online``), and the one
entry point jobs call, ``materialize.materialize_view``.

Import the submodules directly; this package imports nothing.
"""
