"""Point-in-time correct training sets and ad hoc reads over the offline store and batch views:
``training_sets`` (``get_features_for_events``), ``ranges`` (``get_features_in_range``), and the
pieces they are built from. Above both ``featurebus.platform.offline`` (the Parquet store) and
``featurebus.platform.batch`` (batch views), which therefore never import it.

Import the submodules directly; this package imports nothing.
"""
