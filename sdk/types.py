"""Feature data types, named as in ``tecton.types`` so that an import swap just works."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DataType",
    "String",
    "Int64",
    "Int32",
    "Float64",
    "Float32",
    "Bool",
    "Timestamp",
    "Array",
    "Field",
]


@dataclass(frozen=True)
class DataType:
    """A scalar or composite type; ``name`` is the spec's dtype string."""

    name: str

    def __repr__(self) -> str:
        return self.name


String = DataType("string")
Int64 = DataType("int64")
Int32 = DataType("int32")
Float64 = DataType("float64")
Float32 = DataType("float32")
Bool = DataType("bool")
Timestamp = DataType("timestamp")


def Array(element_type: DataType) -> DataType:  # noqa: N802 - Tecton's public name
    return DataType(f"array<{element_type.name}>")


@dataclass(frozen=True)
class Field:
    name: str
    dtype: DataType

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Field name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.dtype, DataType):
            raise TypeError(
                f"Field {self.name!r}: dtype must be a featurebus.types type such as Int64 or "
                f"String, got {self.dtype!r}"
            )
