"""``TectonDataFrame``: what training-set methods return, as in Tecton.

Tecton returns a ``TectonDataFrame`` that users turn into pandas with ``.to_pandas()``. Here it
*is* a pandas DataFrame (a subclass: every pandas operation works on it directly, and keeps the
type), with Tecton's conversions plus Arrow: ``to_pandas()``, ``to_arrow()``, and pandas' own
``to_parquet(path)`` for files. Spark and Snowpark conversions raise, naming the alternative.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pandas as pd
import pyarrow as pa

from featurebus.exceptions import UnsupportedError

__all__ = ["TectonDataFrame"]


class TectonDataFrame(pd.DataFrame):
    @property
    def _constructor(self) -> type[TectonDataFrame]:  # pandas operations return this type, not DataFrame
        return TectonDataFrame

    @classmethod
    def from_pandas(cls, df: pd.DataFrame) -> TectonDataFrame:
        return cls(df)

    def to_pandas(self) -> pd.DataFrame:
        """A plain pandas DataFrame holding the same data (not copied)."""
        return pd.DataFrame(self)

    def to_arrow(self) -> pa.Table:
        """An Arrow table of the rows and columns (the index is dropped)."""
        return pa.Table.from_pandas(self, preserve_index=False)

    def to_spark(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsupportedError(
            "featurebus has no Spark session; use .to_pandas() or .to_arrow() "
            "(or .to_parquet(path) and read the file with Spark)"
        )

    def to_snowpark(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsupportedError("featurebus has no Snowflake session; use .to_pandas() or .to_arrow()")
