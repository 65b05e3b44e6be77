"""An applied workspace from Python, as Tecton offers it: ``featurebus.get_workspace("prod")``.

    ws = featurebus.get_workspace("demo")
    training = ws.get_feature_service("fraud_detection").get_features_for_events(spine)

Definitions come from the registry on the bus; training sets from the offline store under the
platform's home (``FEATUREBUS_HOME``, or ``./.featurebus``), where ``featurebus up`` writes it.
Unlike Tecton's ``TectonDataFrame``, the result is a plain pandas DataFrame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from featurebus.exceptions import NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["FeatureServiceClient", "Workspace", "get_workspace"]


class FeatureServiceClient:
    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name

    def get_features_for_events(self, events: pd.DataFrame, timestamp_key: str | None = None) -> pd.DataFrame:
        """Point-in-time-correct feature values for every row of ``events`` (join keys + a time)."""
        from featurebus.platform.offline.training import get_features_for_events

        return get_features_for_events(self.workspace.spec, self.name, events, self.workspace.offline_root, timestamp_key)


class Workspace:
    def __init__(self, spec: WorkspaceSpec, offline_root: Path) -> None:
        self.spec = spec
        self.offline_root = offline_root

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    def list_feature_services(self) -> list[str]:
        return [s.name for s in self.spec.feature_services]

    def list_feature_views(self) -> list[str]:
        return [v.name for v in self.spec.stream_feature_views] + [v.name for v in self.spec.realtime_feature_views]

    def get_feature_service(self, name: str) -> FeatureServiceClient:
        self.spec.service(name)  # NotFoundError listing the known services
        return FeatureServiceClient(self, name)


def get_workspace(name: str, bootstrap: str | None = None, home: Path | None = None) -> Workspace:
    """The workspace's current applied version, read from the registry on the bus."""
    from featurebus.platform.config import home_dir, resolve_bootstrap
    from featurebus.platform.registry import read_registry

    specs = read_registry(resolve_bootstrap(bootstrap))
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise NotFoundError(f"no workspace named {name!r} has been applied (known: {known}); run `featurebus apply`")
    return Workspace(spec, (home.resolve() if home else home_dir()) / "offline")
