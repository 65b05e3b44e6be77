"""Feature references (``with_name`` / ``with_join_key_map``) compiled to selection specs.

Shared by feature services (``featurebus.compile``) and realtime views' sources
(``featurebus.realtime_compile``): the namespace and join key map are checked against the view
here, at plan time, with the reference's file:line and the fix.
"""

from __future__ import annotations

from featurebus.definitions import FeatureReference
from featurebus.exceptions import DefinitionError
from featurebus.schemas.specs import FeatureSelectionSpec

__all__ = ["compile_reference", "describe_reference", "reference_join_keys"]


def describe_reference(ref: FeatureReference) -> str:
    where = f" ({ref.site})" if ref.site else ""
    return f"the reference to '{ref.view.name}'{where}"


def reference_join_keys(ref: FeatureReference) -> tuple[str, ...] | None:
    """The join keys of the referenced view; None for a realtime view (it has none of its own)."""
    entities = getattr(ref.view, "entities", None)
    if entities is None:
        return None
    return tuple(k.name for e in entities for k in e.join_keys)


def compile_reference(ref: FeatureReference, user: str) -> FeatureSelectionSpec:
    """The selection spec of ``ref`` (namespace and join key map checked against the view);
    ``user`` names what holds the reference, for errors."""
    view_keys = reference_join_keys(ref)
    mapping = dict(ref.join_key_map)
    where = f"{describe_reference(ref)} in {user}"
    if mapping and view_keys is None:
        raise DefinitionError(
            f"{where}: with_join_key_map on realtime feature view '{ref.view.name}', which has no join keys "
            "of its own. Map the keys of its sources instead: source=my_view.with_join_key_map({...})."
        )
    unknown = [k for k in mapping if view_keys is not None and k not in view_keys]
    if unknown:
        raise DefinitionError(
            f"{where}: with_join_key_map names {unknown[0]!r}, which is not a join key of "
            f"'{ref.view.name}' (its join keys: {', '.join(view_keys or ())}). Use the view's join key on "
            f"the left, e.g. with_join_key_map({{'{(view_keys or ('user_id',))[0]}': 'sender_id'}})."
        )
    if view_keys is not None:
        mapped = [mapping.get(k, k) for k in view_keys]
        twice = sorted({m for m in mapped if mapped.count(m) > 1})
        if twice:
            raise DefinitionError(
                f"{where}: with_join_key_map maps two join keys of '{ref.view.name}' to {twice[0]!r}. "
                "Map each join key to its own column."
            )
    name = ref.name if ref.name and ref.name != ref.view.name else ""
    return FeatureSelectionSpec(ref.view.name, tuple(ref.features), name, tuple(sorted(mapping.items())))
