"""Training data comes back as Tecton's ``TectonDataFrame``: a pandas DataFrame with ``to_pandas``."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

import featurebus
from featurebus.exceptions import UnsupportedError
from featurebus.frames import TectonDataFrame


def _frame() -> TectonDataFrame:
    return TectonDataFrame(
        {"user_id": ["u1", "u2"], "amount_sum": [1.5, None], "n": pd.array([1, None], dtype="Int64")}
    )


def test_it_is_importable_from_featurebus_like_tecton() -> None:
    assert featurebus.TectonDataFrame is TectonDataFrame
    with pytest.raises(AttributeError):
        featurebus.NoSuchThing  # noqa: B018


def test_to_pandas_gives_a_plain_dataframe_with_the_same_data() -> None:
    df = _frame().to_pandas()
    assert type(df) is pd.DataFrame
    pd.testing.assert_frame_equal(df, pd.DataFrame(_frame()))


def test_pandas_operations_keep_the_type() -> None:
    assert isinstance(_frame()[["user_id"]], TectonDataFrame)
    assert isinstance(_frame().merge(pd.DataFrame({"user_id": ["u1"]})), TectonDataFrame)


def test_to_arrow_keeps_columns_types_and_nulls(tmp_path: object) -> None:
    table = _frame().to_arrow()
    assert table.column_names == ["user_id", "amount_sum", "n"]
    assert table.schema.field("n").type == pa.int64()
    assert table.column("amount_sum").null_count == 1 and table.column("n").to_pylist() == [1, None]


def test_spark_conversions_name_the_alternative() -> None:
    with pytest.raises(UnsupportedError, match="to_pandas"):
        _frame().to_spark()
    with pytest.raises(UnsupportedError, match="to_arrow"):
        _frame().to_snowpark()
