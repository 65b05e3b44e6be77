"""The methods Tecton's feature views and services offer before (or without) ``apply``.

Mixed into ``FeatureView``, ``RealtimeFeatureView`` and ``FeatureService``; each delegates to
``featurebus.local_testing`` (computing over mock or local sources) or
``featurebus.online_client`` (reading the serving API), imported on first call so that
defining features never loads pandas or an HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurebus.exceptions import InvalidRequestError

if TYPE_CHECKING:
    import pandas as pd

    from featurebus.frames import TectonDataFrame
    from featurebus.online_client import FeatureVector

__all__ = ["MaterializedViewMethods", "OnlineReads", "RealtimeViewMethods", "ServiceMethods"]


def _from_source_only(from_source: bool | None) -> None:
    if from_source is False:
        raise InvalidRequestError(
            "from_source=False reads materialized values, which only an applied workspace "
            "has: use featurebus.get_workspace(name).get_feature_view(...) for those"
        )


class OnlineReads:
    """``get_online_features`` of views (services override it)."""

    name: str

    def get_online_features(
        self,
        join_keys: Mapping[str, Any],
        include_join_keys_in_response: bool = False,
        request_data: Mapping[str, Any] | None = None,
    ) -> FeatureVector:
        """This view's served values for ``join_keys`` (and ``request_data``), read from the serving
        API of the configured workspace (``featurebus.online_client`` says which)."""
        from featurebus.online_client import get_online_features

        return get_online_features(
            feature_view=self.name,
            join_keys=join_keys,
            request_data=request_data,
            include_join_keys_in_response=include_join_keys_in_response,
        )


class MaterializedViewMethods(OnlineReads):
    """Stream and batch views: their transformation and their features over mock sources."""

    def get_features_for_events(
        self,
        events: pd.DataFrame,
        timestamp_key: str | None = None,
        from_source: bool | None = None,
        mock_inputs: Mapping[str, pd.DataFrame] | None = None,
        compute_mode: str | None = None,
    ) -> TectonDataFrame:
        """``events`` plus ``<view>__<feature>`` columns as of each row's time, computed from the
        sources (``mock_inputs={source name: DataFrame}`` replaces a source's data). There is one
        compute engine, so ``compute_mode`` changes nothing."""
        from featurebus.local_testing import features_for_events

        _from_source_only(from_source)
        return features_for_events(self, events, timestamp_key, mock_inputs)

    def run_transformation(
        self,
        start_time: datetime | pd.DataFrame | None = None,
        end_time: datetime | None = None,
        mock_inputs: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
        compute_mode: str | None = None,
    ) -> TectonDataFrame:
        """The transformation's output (before aggregation) for the sources' rows in
        ``[start_time, end_time)``; ``run_transformation(df)`` runs it on a DataFrame of the only source."""
        from featurebus.local_testing import run_view_transformation

        return run_view_transformation(self, start_time, end_time, mock_inputs)


class RealtimeViewMethods(OnlineReads):
    def get_features_for_events(
        self,
        events: pd.DataFrame,
        timestamp_key: str | None = None,
        from_source: bool | None = None,
        mock_inputs: Mapping[str, pd.DataFrame] | None = None,
        compute_mode: str | None = None,
    ) -> TectonDataFrame:
        """``events`` plus ``<view>__<feature>`` columns: request fields are read from the columns of
        their names and upstream features from mocked ``<upstream view>__<feature>`` columns (or,
        without those, computed from the upstream views' sources and ``mock_inputs``)."""
        from featurebus.local_testing import realtime_features_for_events

        _from_source_only(from_source)
        return realtime_features_for_events(self, events, timestamp_key, mock_inputs)

    def run_transformation(self, input_data: Mapping[str, Any]) -> Any:
        """The view's function on ``input_data`` ({"<parameter or source name>": values, optionally
        "context": RealtimeContext(...) or MockContext(...)}): a dict in python mode, a DataFrame
        in pandas mode."""
        from featurebus.local_testing import run_realtime_transformation

        return run_realtime_transformation(self, input_data)


class ServiceMethods:
    name: str

    def get_features_for_events(
        self,
        events: pd.DataFrame,
        timestamp_key: str | None = None,
        from_source: bool | None = None,
        mock_inputs: Mapping[str, pd.DataFrame] | None = None,
        compute_mode: str | None = None,
    ) -> TectonDataFrame:
        """A training set of the service's features for ``events``, computed from the sources of
        its views (``mock_inputs={source name: DataFrame}`` replaces a source's data)."""
        from featurebus.local_testing import features_for_events

        _from_source_only(from_source)
        return features_for_events(self, events, timestamp_key, mock_inputs)

    def get_online_features(
        self,
        join_keys: Mapping[str, Any] | None = None,
        include_join_keys_in_response: bool = False,
        request_data: Mapping[str, Any] | None = None,
    ) -> FeatureVector:
        """The service's served values for ``join_keys`` and ``request_data``, from the serving API."""
        from featurebus.online_client import get_online_features

        return get_online_features(
            feature_service=self.name,
            join_keys=join_keys,
            request_data=request_data,
            include_join_keys_in_response=include_join_keys_in_response,
        )
