"""Feature data types, named as in ``tecton.types`` so that an import swap just works.

Every type has a spec encoding, its ``name``: ``string``, ``int64``, ``int32``, ``float64``,
``float32``, ``bool``, ``timestamp``, ``array<T>``, ``map<K,V>`` and ``struct<a:T,b:U>``, nested
freely. Specs carry only that text (covered by ``SPEC_FORMAT_VERSION``); ``parse_dtype`` turns
it back into a type, and ``parse_dtype(t.name) == t`` for every type.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from featurebus.schemas.errors import DefinitionError

__all__ = [
    "DataType",
    "SdkDataType",
    "String",
    "Int64",
    "Int32",
    "Float64",
    "Float32",
    "Bool",
    "Timestamp",
    "Array",
    "Struct",
    "Map",
    "Field",
    "parse_dtype",
    "SCALAR_NAMES",
]


class DataType:
    """A scalar or composite type; ``name`` is its spec encoding. Types compare by encoding."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return _SCALAR_REPR.get(self.name, self.name)


SdkDataType = DataType  # Tecton's name for the base class

String = DataType("string")
Int64 = DataType("int64")
Int32 = DataType("int32")
Float64 = DataType("float64")
Float32 = DataType("float32")
Bool = DataType("bool")
Timestamp = DataType("timestamp")

_SCALARS = {t.name: t for t in (String, Int64, Int32, Float64, Float32, Bool, Timestamp)}
_SCALAR_REPR = {
    "string": "String",
    "int64": "Int64",
    "int32": "Int32",
    "float64": "Float64",
    "float32": "Float32",
    "bool": "Bool",
    "timestamp": "Timestamp",
}
SCALAR_NAMES = frozenset(_SCALARS)


def _require_type(value: object, what: str) -> DataType:
    if isinstance(value, type) or not isinstance(value, DataType):
        raise DefinitionError(
            f"{what} must be a featurebus.types type such as Int64, String or Array(Float64), got {value!r}. "
            "Use the type objects (Int64), not Python types (int)."
        )
    return value


class Array(DataType):
    __slots__ = ("element_type",)

    def __init__(self, element_type: DataType) -> None:
        self.element_type = _require_type(element_type, "Array element_type")
        super().__init__(f"array<{element_type.name}>")

    def __repr__(self) -> str:
        return f"Array({self.element_type!r})"


class Map(DataType):
    __slots__ = ("key_type", "value_type")

    def __init__(self, key_type: DataType, value_type: DataType) -> None:
        self.key_type = _require_type(key_type, "Map key_type")
        self.value_type = _require_type(value_type, "Map value_type")
        if key_type != String:  # JSON object keys are strings, as are Tecton's map keys
            raise DefinitionError(f"Map key_type must be String, got {key_type!r}. Use Map(String, {value_type!r}).")
        super().__init__(f"map<{key_type.name},{value_type.name}>")

    def __repr__(self) -> str:
        return f"Map({self.key_type!r}, {self.value_type!r})"


class Struct(DataType):
    __slots__ = ("fields",)

    def __init__(self, fields: Sequence[Field]) -> None:
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise DefinitionError(
                f"Struct fields must be a non-empty list of Field, got {fields!r}. "
                "Use Struct([Field('lat', Float64), Field('lon', Float64)])."
            )
        names = [f.name for f in fields]
        if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise DefinitionError(f"Struct field names must be distinct identifiers, got {names}. Rename them.")
        self.fields = tuple(fields)
        super().__init__("struct<" + ",".join(f"{f.name}:{f.dtype.name}" for f in self.fields) + ">")

    def __repr__(self) -> str:
        return f"Struct({list(self.fields)!r})"


@dataclass(frozen=True)
class Field:
    name: str
    dtype: DataType
    # Where the Field was written, for errors that point at the user's line; not part of equality.
    site: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.site:
            frame = sys._getframe(2)  # the caller of the generated __init__
            object.__setattr__(self, "site", f"{frame.f_code.co_filename}:{frame.f_lineno}")
        if not isinstance(self.name, str) or not self.name:
            raise DefinitionError(
                f"Field ({self.site}): the name must be a non-empty string, got {self.name!r}. "
                "Use e.g. Field('amount', Float64)."
            )
        _require_type(self.dtype, f"Field {self.name!r} ({self.site}): dtype")

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.dtype!r})"


@lru_cache(maxsize=1024)
def parse_dtype(text: str) -> DataType:
    """The type a spec's dtype string encodes; ValueError for text no type encodes."""
    parsed, rest = _parse(text.replace(" ", ""))
    if rest:
        raise ValueError(f"unexpected {rest!r} after a type in {text!r}")
    return parsed


def _parse(text: str) -> tuple[DataType, str]:
    for prefix in ("array<", "map<", "struct<"):
        if text.startswith(prefix):
            break
    else:
        name = text.split(",", 1)[0].split(">", 1)[0]
        if name not in _SCALARS:
            raise ValueError(f"unknown type {name!r}")
        return _SCALARS[name], text[len(name) :]
    rest = text[len(prefix) :]
    if prefix == "array<":
        element, rest = _parse(rest)
        return Array(element), _expect(rest, ">")
    if prefix == "map<":
        key, rest = _parse(rest)
        value, rest = _parse(_expect(rest, ","))
        return Map(key, value), _expect(rest, ">")
    fields = []
    while True:
        name, sep, rest = rest.partition(":")
        if not sep:
            raise ValueError("a struct field needs 'name:type'")
        dtype, rest = _parse(rest)
        fields.append(Field(name, dtype, site="spec"))
        if rest.startswith(">"):
            return Struct(fields), rest[1:]
        rest = _expect(rest, ",")


def _expect(text: str, token: str) -> str:
    if not text.startswith(token):
        raise ValueError(f"expected {token!r} at {text!r}")
    return text[len(token) :]
