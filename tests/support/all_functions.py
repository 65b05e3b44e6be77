"""A view with every aggregation function over float, int and string columns, plus Attributes,
for the engine and training-set property tests; and the oracle's view of the same events."""

from __future__ import annotations

import dataclasses
from typing import Any

from featurebus.schemas.specs import AggregationSpec, StreamFeatureViewSpec, TransformationSpec
from featurebus.streams.aggregations import output_dtype

# Derived columns with few distinct values, so distinct, min/max on strings and ties get exercised.
TRANSFORM = TransformationSpec(
    "pandas",
    "derive",
    "def derive(df):\n"
    "    df = df.copy()\n"
    "    present = df['amount'].notna()\n"
    "    df['units'] = df['amount'].where(present, 0).abs().astype('int64') % 7\n"
    "    df['units'] = df['units'].astype('Int64').where(present)\n"
    "    df['tag'] = ('k' + df['units'].astype('string').fillna('')).where(present)\n"
    "    return df\n",
)


def derived(amount: float | None) -> dict[str, Any]:
    """What TRANSFORM makes of one event's amount (computed independently, for the oracle)."""
    if amount is None:
        return {"amount": None, "units": None, "tag": None}
    units = int(abs(amount)) % 7
    return {"amount": amount, "units": units, "tag": f"k{units}"}


# (function, column, params)
FUNCTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("count", "amount", {}),
    ("sum", "units", {}),
    ("mean", "amount", {}),
    ("min", "amount", {}),
    ("max", "tag", {}),
    ("min", "units", {}),
    ("last", "amount", {}),
    ("last", "tag", {}),
    ("first_n", "amount", {"n": 2}),
    ("last_n", "units", {"n": 3}),
    ("first_distinct_n", "tag", {"n": 2}),
    ("last_distinct_n", "units", {"n": 3}),
    ("last_distinct_n", "amount", {"n": 2}),
    ("var_pop", "amount", {}),
    ("var_samp", "amount", {}),
    ("stddev_pop", "units", {}),
    ("stddev_samp", "amount", {}),
    ("approx_count_distinct", "tag", {"precision": 8}),
    ("approx_count_distinct", "amount", {"precision": 4}),
    ("approx_percentile", "amount", {"percentile": 0.5, "precision": 100}),
    ("approx_percentile", "units", {"percentile": 0.9, "precision": 20}),
]
DTYPES = {"amount": "float64", "units": "int64", "tag": "string"}


def all_functions_view(
    base: StreamFeatureViewSpec, windows: list[tuple[str, int]], attribute_ttl_ms: int | None = None
) -> StreamFeatureViewSpec:
    aggregations = []
    for label, window_ms in windows:
        for i, (fn, column, params) in enumerate(FUNCTIONS):
            dtype = DTYPES[column]
            aggregations.append(
                AggregationSpec(
                    f"f{i}_{fn}_{column}_{label}", fn, column, dtype, window_ms, output_dtype(fn, dtype), **params
                )
            )
    if attribute_ttl_ms is not None:
        for column in ("amount", "tag"):
            aggregations.append(
                AggregationSpec(
                    column,
                    "last",
                    column,
                    DTYPES[column],
                    attribute_ttl_ms,
                    output_dtype("last", DTYPES[column]),
                    attribute=True,
                )
            )
    return dataclasses.replace(base, transformation=TRANSFORM, aggregations=tuple(aggregations))


def oracle_params(a: AggregationSpec) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if a.n is not None:
        params["n"] = a.n
    if a.percentile is not None:
        params["percentile"] = a.percentile
    if a.attribute:
        params["keep_nulls"] = True
    return params


def keyed_view(base: StreamFeatureViewSpec, windows: list[tuple[str, int]], key: str) -> StreamFeatureViewSpec:
    """``all_functions_view``'s aggregations (no Attributes) with ``aggregation_secondary_key=key``
    as ``featurebus.compile`` builds it: arrays per key, and a ``<key>_keys_<window>`` feature each."""
    plain = all_functions_view(base, windows)
    keyed: list[AggregationSpec] = [
        AggregationSpec(
            f"{key}_keys_{label}",
            "count",
            key,
            DTYPES[key],
            window_ms,
            f"array<{DTYPES[key]}>",
            secondary_key=key,
            secondary_key_dtype=DTYPES[key],
            keys_feature=True,
        )
        for label, window_ms in windows
    ]
    keyed.extend(
        dataclasses.replace(
            a, output_dtype=f"array<{a.output_dtype}>", secondary_key=key, secondary_key_dtype=DTYPES[key]
        )
        for a in plain.aggregations
    )
    return dataclasses.replace(plain, aggregations=tuple(keyed))
