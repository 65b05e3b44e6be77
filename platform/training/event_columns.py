"""The column schema of the event and spine tables the training-set kernels join.

A view's events are read (``events.py``) into one Arrow table per time slice whose columns are
SQL-safe names, whatever the user's column names are (they may need quoting, or clash with each
other across join keys and inputs). ``EventColumns`` declares that schema for one view:

========== ======= ===========================================================================
column     type    meaning
========== ======= ===========================================================================
``k<i>``   any     the view's i-th join key (``keys``), the same type as the spine's column
``__ts``   int64   event time, epoch ms (``TS``)
``v<j>``   any     the j-th distinct input column of the view's aggregations (``value(name)``)
``__seq``  int64   arrival order (``SEQ``): ties in event time are broken by it, as online
========== ======= ===========================================================================

The spine side of a join carries the same key columns (``EventColumns.spine_keys``) and its row
number ``ROW``; the SQL kernels (``window_sql.py``, ``event_pairs.py``) add their own bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from featurebus.platform.training.spine import check_join_key_types
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import StreamFeatureViewSpec

__all__ = ["ROW", "SEQ", "TS", "EventColumns", "with_arrival_order"]

TS = "__ts"
SEQ = "__seq"
ROW = "__row"


@dataclass(frozen=True)
class EventColumns:
    """The declared event-table columns of one view (see the module docstring)."""

    join_keys: tuple[str, ...]  # the view's join key names, in order
    aliases: dict[str, str]  # input column name -> its SQL-safe column

    @classmethod
    def of(cls, view: StreamFeatureViewSpec) -> EventColumns:
        inputs = dict.fromkeys(
            [a.input_column for a in view.aggregations]
            + [a.secondary_key for a in view.aggregations if a.secondary_key]
        )
        return cls(tuple(view.join_keys), {name: f"v{j}" for j, name in enumerate(inputs)})

    @property
    def keys(self) -> list[str]:
        """The key columns, in join-key order."""
        return [f"k{i}" for i in range(len(self.join_keys))]

    @property
    def values(self) -> list[str]:
        """The distinct input columns' SQL names, sorted."""
        return sorted(set(self.aliases.values()))

    def value(self, input_column: str) -> str:
        return self.aliases[input_column]

    def table(self, frame: pd.DataFrame, ts_ms: np.ndarray) -> pa.Table:
        """A view's input rows (``view_input_frame``) in this schema, without ``SEQ``."""
        columns = {
            column: pa.array(frame[key], from_pandas=True)
            for column, key in zip(self.keys, self.join_keys, strict=True)
        }
        columns[TS] = pa.array(ts_ms, type=pa.int64())
        for name, alias in self.aliases.items():
            columns[alias] = pa.array(frame[name], from_pandas=True)  # NaN -> null, as online
        return pa.table(columns)

    def spine_keys(self, spine: pd.DataFrame, events: pa.Table | None) -> dict[str, pa.Array]:
        """The spine's join keys as Arrow key columns, checked against the events' key types."""
        keys = {}
        for column, key in zip(self.keys, self.join_keys, strict=True):
            try:
                keys[column] = pa.array(spine[key], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidRequestError(f"spine column {key!r} cannot be a join key: {exc}") from exc
            if events is not None:
                check_join_key_types(key, keys[column].type, events.column(column).type)
        return keys


def with_arrival_order(pieces: list[pa.Table]) -> pa.Table | None:
    """The pieces concatenated in order, numbered by ``SEQ``: ties in event time are broken by
    it (the store is read in topic, partition, offset order), as the stream engine breaks them
    by the order records reach it."""
    if not pieces:
        return None
    table = pa.concat_tables(pieces, promote_options="permissive")
    return table.append_column(SEQ, pa.array(np.arange(table.num_rows, dtype=np.int64)))
