"""Realtime feature views, as Tecton 1.x declares them: computed per request, never materialized.

    transaction = RequestSource(schema=[Field("amount", Float64)])

    @realtime_feature_view(sources=[transaction, user_spend], mode="python",
                           features=[Attribute("amount_is_high", Bool)])
    def amount_is_high(transaction, user_spend):
        return {"amount_is_high": transaction["amount"] > 2 * (user_spend["amount_mean_1d_continuous"] or 0)}

    ratio = RealtimeFeatureView(name="ratio", sources=[transaction, user_spend], features=[
        Calculation(name="amount_ratio", expr="transaction.amount / user_spend.amount_mean_1d_continuous")])

Sources are passed to the function positionally, in the order listed (python mode: one dict per
source, features by their own names; pandas mode: one DataFrame per source); a parameter named
``context`` (or ``context_parameter_name``) receives a ``RealtimeContext`` with the request time.
Cross-object checks (features that exist, Calculation types, cycles) happen in ``compile``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurebus.definition_base import DefinitionSite, _caller_site, _fail, _require_name
from featurebus.definitions import Attribute, FeatureReference, FeatureView
from featurebus.exceptions import DefinitionError
from featurebus.schemas.kinds import RealtimeMode
from featurebus.types import Field
from featurebus.view_methods import RealtimeViewMethods

__all__ = [
    "Attribute",
    "Calculation",
    "DEFAULT_REQUEST_SOURCE_NAME",
    "RealtimeFeatureView",
    "RequestSource",
    "realtime_feature_view",
]

DEFAULT_REQUEST_SOURCE_NAME = "request_source"
DEFAULT_CONTEXT_PARAMETER_NAME = "context"
NO_TRANSFORMATION = RealtimeMode.NO_TRANSFORMATION


class RequestSource:
    """Data that arrives with each request (``requestContextMap`` online, spine columns offline)."""

    def __init__(self, schema: Sequence[Field], name: str | None = DEFAULT_REQUEST_SOURCE_NAME) -> None:
        self.site = _caller_site()
        self.name = _require_name("RequestSource", name or DEFAULT_REQUEST_SOURCE_NAME, self.site)
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise _fail(
                "RequestSource",
                self.name,
                self.site,
                "schema must be a non-empty list of Field",
                "Pass schema=[Field('amount', Float64)].",
            )
        names = [f.name for f in schema]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _fail(
                "RequestSource", self.name, self.site, f"the schema repeats fields {repeated}", "Name every field once."
            )
        self.schema = tuple(schema)

    def __repr__(self) -> str:
        return f"RequestSource({self.name!r})"


@dataclass
class Calculation:
    """A feature computed by a SQL-like expression over the view's sources, e.g.
    ``Calculation(name="ratio", expr="request_source.amount / user_spend.amount_mean_1d_continuous")``."""

    name: str
    expr: str
    description: str | None = None
    tags: dict[str, str] | None = None
    site: DefinitionSite = field(default_factory=lambda: _caller_site(3), repr=False)

    def __post_init__(self) -> None:
        _require_name("Calculation", self.name, self.site)
        if not isinstance(self.expr, str) or not self.expr.strip():
            raise _fail(
                "Calculation",
                self.name,
                self.site,
                "expr must be a non-empty string",
                'Pass e.g. expr="request_source.amount * 2".',
            )


RealtimeSource = RequestSource | FeatureReference


class RealtimeFeatureView(RealtimeViewMethods, FeatureView):
    """Tecton's ``RealtimeFeatureView``: instantiate it directly for Calculation features; use
    ``@realtime_feature_view`` for python or pandas transformations."""

    def __init__(
        self,
        *,
        name: str,
        sources: Sequence[RequestSource | FeatureView | FeatureReference],
        features: Sequence[Attribute | Calculation],
        mode: str | None = NO_TRANSFORMATION,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        feature_view_function: Callable[..., Any] | None = None,
        environments: list[str] | None = None,
        required_packages: list[str] | None = None,
        secrets: dict[str, Any] | None = None,
        resource_providers: dict[str, Any] | None = None,
        _context_parameter_name: str | None = DEFAULT_CONTEXT_PARAMETER_NAME,
        _site: DefinitionSite | None = None,
    ) -> None:
        self.site = _site or _caller_site()
        self.name = _require_name("RealtimeFeatureView", name, self.site)
        mode = mode or NO_TRANSFORMATION
        for option, value in (("secrets", secrets), ("resource_providers", resource_providers)):
            if value:
                raise self.error(f"{option} are not supported yet", f"Remove {option}=.")
        # environments / required_packages select Tecton's transform servers; featurebus runs every
        # transformation in the serving process, whose environment must provide what they import.
        self.environments = tuple(environments or ())
        self.required_packages = tuple(required_packages or ())
        self.sources = self._normalise_sources(sources)
        self.features = tuple(features)
        self.mode = mode
        self.context_parameter_name = _context_parameter_name or DEFAULT_CONTEXT_PARAMETER_NAME
        self._check_features(feature_view_function)
        if feature_view_function is not None:
            self.function = feature_view_function
            self.parameters = self._bind_parameters(feature_view_function)
        self.has_transformation = feature_view_function is not None
        self._keep_metadata(description, owner, tags, prevent_destroy)

    def _normalise_sources(self, sources: Sequence[Any]) -> tuple[RealtimeSource, ...]:
        if not sources:
            raise self.error("sources is empty", "Pass sources=[a RequestSource and/or feature views].")
        result: list[RealtimeSource] = []
        for source in sources:
            if isinstance(source, FeatureView):
                result.append(FeatureReference(source, ()))
            elif isinstance(source, RequestSource | FeatureReference):
                result.append(source)
            else:
                raise self.error(
                    f"source {source!r} is neither a RequestSource nor a feature view",
                    "List RequestSource objects, feature views, or selections like fv[['a']].",
                )
        names = [s.name if isinstance(s, RequestSource) else s.namespace for s in result]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(
                f"two sources are both named {repeated}",
                "Give each RequestSource its own name=; a view listed twice needs .with_name('...') "
                "on one of them (e.g. with a with_join_key_map for the second entity).",
            )
        return tuple(result)

    def _check_features(self, function: Callable[..., Any] | None) -> None:
        if not self.features or not all(isinstance(f, Attribute | Calculation) for f in self.features):
            raise self.error(
                "features must be a non-empty list of Attribute or Calculation",
                "Pass features=[Attribute('name', Float64)] or [Calculation(name=..., expr=...)].",
            )
        calculations = [f for f in self.features if isinstance(f, Calculation)]
        if calculations and len(calculations) != len(self.features):
            raise self.error(
                "Attribute and Calculation features cannot be mixed in one view",
                "Split them into two realtime feature views.",
            )
        if calculations and function is not None:
            raise self.error(
                "Calculation features cannot have a transformation function",
                "Use the RealtimeFeatureView(...) class without a function, or Attribute features.",
            )
        if function is None and not calculations:
            raise self.error(
                "Attribute features need a transformation function",
                "Decorate a function with @realtime_feature_view(mode='python', ...).",
            )
        if function is None and self.mode != NO_TRANSFORMATION:
            raise self.error(
                f"mode {self.mode!r} needs a transformation function", "Leave mode unset for Calculation features."
            )
        if function is not None and self.mode not in (RealtimeMode.PYTHON, RealtimeMode.PANDAS):
            raise self.error(f"mode {self.mode!r} is not supported", "Use mode='python' or mode='pandas'.")
        names = [f.name for f in self.features]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise self.error(f"two features are both named {repeated}", "Give every feature its own name.")

    def _bind_parameters(self, function: Callable[..., Any]) -> tuple[str, ...]:
        """Tecton's binding: the non-context parameters take the sources in order."""
        params = [p for p in inspect.signature(function).parameters.values() if p.name != self.context_parameter_name]
        if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise self.error(
                "the function's parameters must be plain positional parameters",
                "Declare one parameter per source, e.g. def f(request, user_spend).",
            )
        if len(params) != len(self.sources):
            raise self.error(
                f"the function takes {len(params)} source parameter(s) but the view has {len(self.sources)} source(s)",
                f"Declare one parameter per source, in order (plus an optional "
                f"{self.context_parameter_name!r} parameter for the request context).",
            )
        return tuple(p.name for p in params)

    @property
    def takes_context(self) -> bool:
        return self.has_transformation and self.context_parameter_name in inspect.signature(self.function).parameters

    def __repr__(self) -> str:
        return f"RealtimeFeatureView({self.name!r})"


def realtime_feature_view(
    *,
    mode: str,
    sources: Sequence[RequestSource | FeatureView | FeatureReference],
    features: Sequence[Attribute],
    name: str | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    environments: list[str] | None = None,
    context_parameter_name: str | None = None,
    secrets: dict[str, Any] | None = None,
    resource_providers: dict[str, Any] | None = None,
    required_packages: list[str] | None = None,
) -> Callable[[Callable[..., Any]], RealtimeFeatureView]:
    site = _caller_site()

    def wrap(function: Callable[..., Any]) -> RealtimeFeatureView:
        if mode == NO_TRANSFORMATION:
            raise DefinitionError(
                f"RealtimeFeatureView '{name or function.__name__}' ({site}): mode "
                f"{NO_TRANSFORMATION!r} cannot decorate a function. Use mode='python' or "
                "mode='pandas', or the RealtimeFeatureView class for Calculations."
            )
        return RealtimeFeatureView(
            name=name or function.__name__,
            sources=sources,
            features=features,
            mode=mode,
            description=description,
            owner=owner,
            tags=tags,
            prevent_destroy=prevent_destroy,
            feature_view_function=function,
            environments=environments,
            required_packages=required_packages,
            secrets=secrets,
            resource_providers=resource_providers,
            _context_parameter_name=context_parameter_name or DEFAULT_CONTEXT_PARAMETER_NAME,
            _site=site,
        )

    return wrap
