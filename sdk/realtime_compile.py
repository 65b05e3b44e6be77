"""Compiling realtime feature views to specs: sources resolved, Calculations parsed and typed.

Kept apart from ``featurebus.compile`` (which calls it) so the realtime rules read in one place.
Every error names the view (or Calculation), its file:line and what to change.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from featurebus.definitions import FeatureReference
from featurebus.exceptions import DefinitionError
from featurebus.realtime import Attribute, Calculation, RealtimeFeatureView, RequestSource
from featurebus.references import compile_reference
from featurebus.schemas.kinds import RealtimeInputKind, RealtimeMode, TransformationMode
from featurebus.schemas.specs import (
    CalculationSpec,
    FieldSpec,
    RealtimeFeatureViewSpec,
    RealtimeInputSpec,
    StreamFeatureViewSpec,
    TransformationSpec,
)
from featurebus.streams.calculation import CalculationError, parse_calculation
from featurebus.streams.realtime import DependencyCycleError, calculation_schema, feature_fields, realtime_order

__all__ = ["compile_realtime_views", "view_features"]


def view_features(view: StreamFeatureViewSpec) -> tuple[FieldSpec, ...]:
    return feature_fields(view)


def compile_realtime_views(
    views: Mapping[str, RealtimeFeatureView], upstream: Mapping[str, tuple[FieldSpec, ...]]
) -> dict[str, RealtimeFeatureViewSpec]:
    """Specs of ``views`` (in dependency order); ``upstream`` holds the stream views' features."""
    dependencies = {
        name: [s.view.name for s in view.sources if isinstance(s, FeatureReference)] for name, view in views.items()
    }
    try:
        order = realtime_order(dependencies)
    except DependencyCycleError as exc:
        raise views[exc.cycle[0]].error(
            f"its sources form a cycle: {' -> '.join(exc.cycle)}", "Remove one of these sources."
        ) from None
    offered: dict[str, tuple[FieldSpec, ...]] = dict(upstream)
    specs: dict[str, RealtimeFeatureViewSpec] = {}
    for name in order:
        spec = _compile_view(views[name], offered)
        specs[name] = spec
        offered[name] = spec.features
    return specs


def _compile_view(view: RealtimeFeatureView, offered: Mapping[str, tuple[FieldSpec, ...]]) -> RealtimeFeatureViewSpec:
    parameters = view.parameters if view.has_transformation else ("",) * len(view.sources)
    inputs = tuple(_compile_source(view, s, p, offered) for s, p in zip(view.sources, parameters, strict=True))
    if not view.has_transformation:
        spec = RealtimeFeatureViewSpec(
            view.name, inputs, (), RealtimeMode.NO_TRANSFORMATION, description=view.description
        )
        schema = calculation_schema(spec)
        calculations = []
        for feature in view.features:
            assert isinstance(feature, Calculation)  # checked on construction
            try:
                node = parse_calculation(feature.expr, schema)
            except CalculationError as exc:
                raise DefinitionError(
                    f"Calculation '{feature.name}' of RealtimeFeatureView '{view.name}' ({feature.site}): {exc}. "
                    f"Fix expr={feature.expr!r}; columns are <source>.<feature>, e.g. "
                    f"{next(iter(k for k in schema if k != 'context.request_timestamp'), 'request_source.amount')}."
                ) from None
            calculations.append(CalculationSpec(feature.name, feature.expr, node.dtype))
        features = tuple(FieldSpec(c.name, c.dtype) for c in calculations)
        return RealtimeFeatureViewSpec(
            view.name,
            inputs,
            features,
            RealtimeMode.NO_TRANSFORMATION,
            calculations=tuple(calculations),
            description=view.description,
        )
    code = view.transformation_code
    _check_field_reads(view, code, inputs)
    attributes = []
    for feature in view.features:
        assert isinstance(feature, Attribute)  # checked on construction
        attributes.append(FieldSpec(feature.name, feature.dtype.name))
    return RealtimeFeatureViewSpec(
        name=view.name,
        inputs=inputs,
        features=tuple(attributes),
        mode=RealtimeMode(view.mode),
        transformation=TransformationSpec(TransformationMode(view.mode), view.function.__name__, code),
        context_parameter=view.context_parameter_name if view.takes_context else None,
        description=view.description,
    )


def _compile_source(
    view: RealtimeFeatureView,
    source: RequestSource | FeatureReference,
    parameter: str,
    offered: Mapping[str, tuple[FieldSpec, ...]],
) -> RealtimeInputSpec:
    if isinstance(source, RequestSource):
        return RealtimeInputSpec(
            RealtimeInputKind.REQUEST,
            source.name,
            tuple(FieldSpec(f.name, f.dtype.name) for f in source.schema),
            parameter,
        )
    fields = offered.get(source.view.name)
    if fields is None:
        raise view.error(
            f"source {source.view.name!r} is not a view this workspace can compute",
            "Use a stream, batch or realtime feature view of this repository.",
        )
    by_name = {f.name: f for f in fields}
    unknown = [f for f in source.features if f not in by_name]
    if unknown:
        raise view.error(
            f"source {source.view.name!r} has no feature {unknown[0]!r}", f"Choose from: {', '.join(by_name)}."
        )
    selected = tuple(by_name[f] for f in source.features) if source.features else fields
    reference = compile_reference(source, f"RealtimeFeatureView '{view.name}' ({view.site})")
    if (reference.name or reference.join_key_map) and isinstance(source.view, RealtimeFeatureView):
        raise view.error(
            f"source {source.view.name!r} is a realtime feature view used with with_name/with_join_key_map",
            "Use the realtime view itself as the source, or remap the keys of its own sources.",
        )
    return RealtimeInputSpec(
        RealtimeInputKind.FEATURE_VIEW,
        source.view.name,
        selected,
        parameter,
        namespace=reference.name,
        join_key_map=reference.join_key_map,
    )


def _check_field_reads(view: RealtimeFeatureView, code: str, inputs: tuple[RealtimeInputSpec, ...]) -> None:
    """``source["name"]`` and ``source.get("name")`` in the function must name one of the source's
    fields: a typo is found at plan time rather than by the first request (a KeyError)."""
    fields = {i.parameter: [f.name for f in i.fields] for i in inputs}
    for node in ast.walk(ast.parse(code)):
        target: ast.expr | None = None
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript):
            target, key = node.value, node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            target, key = node.func.value, node.args[0]
        if not (
            isinstance(target, ast.Name)
            and target.id in fields
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            continue
        if key.value not in fields[target.id]:
            source = next(i.name for i in inputs if i.parameter == target.id)
            raise view.error(
                f"the function reads {target.id}[{key.value!r}], which source {source!r} does not have",
                f"Use one of: {', '.join(fields[target.id])} (or add the field to the source).",
            )
