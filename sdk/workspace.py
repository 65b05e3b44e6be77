"""An applied workspace from Python, as Tecton offers it: ``featurebus.get_workspace("prod")``.

    ws = featurebus.get_workspace("demo")
    training = ws.get_feature_service("fraud_detection").get_features_for_events(spine)
    values = ws.get_feature_view("user_transaction_stats").get_features_in_range(start, end)

Definitions come from the control plane when a login is configured (``featurebus login``, or
``FEATUREBUS_CONTROL_URL`` / ``FEATUREBUS_API_KEY``): no Kafka credentials needed, and the job methods
go through it too (its roles and audit log). ``get_workspace(name, bootstrap=...)`` reads the
registry on that bus directly instead (bus admins), as does a machine without a login. Training sets
come from the offline store under the platform's home (``FEATUREBUS_HOME``, or ``./.featurebus``),
where ``featurebus up`` writes it, after the control plane confirms the caller's role.
Development workspaces work the same way, ad hoc: they are never materialized, so their sources
read what live workspaces materialized from the same topics (push sources: of the same name);
``featurebus.platform.offline.locations`` has the rule. Results are ``TectonDataFrame``s: pandas
DataFrames with Tecton's ``to_pandas()`` and an Arrow ``to_arrow()`` (``featurebus.frames``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurebus.exceptions import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from featurebus.frames import TectonDataFrame
    from featurebus.online_client import FeatureVector
    from featurebus.platform.deletes.receipt import DeleteReceipt
    from featurebus.schemas.jobs import Job
    from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["FeatureServiceClient", "FeatureTableClient", "FeatureViewClient", "Workspace", "get_workspace"]


class FeatureServiceClient:
    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name

    def get_features_for_events(self, events: pd.DataFrame, timestamp_key: str | None = None) -> TectonDataFrame:
        """Point-in-time-correct feature values for every row of ``events`` (join keys + a time)."""
        from featurebus.frames import TectonDataFrame
        from featurebus.platform.training.training_sets import get_features_for_events

        ws = self.workspace
        ws.confirm_offline_read()
        return TectonDataFrame(
            get_features_for_events(ws.spec, self.name, events, ws.offline_root, timestamp_key, ws.offline_data)
        )

    def get_logged_features(self, start: datetime | None = None, end: datetime | None = None) -> TectonDataFrame:
        """The requests logged by serving (``FeatureService(logging=LoggingConfig(...))``) with
        request time in ``[start, end)``: join keys, request context, ``timestamp`` (the request
        time), ``request_id`` and one ``<view>__<feature>`` column per served feature, as a
        training set has them."""
        from featurebus.frames import TectonDataFrame
        from featurebus.platform.offline.logged_features import read_logged_features

        ws = self.workspace
        return TectonDataFrame(read_logged_features(ws.offline_root, ws.name, self.name, start, end))

    def get_online_features(
        self,
        join_keys: Mapping[str, Any] | None = None,
        include_join_keys_in_response: bool = False,
        request_data: Mapping[str, Any] | None = None,
    ) -> FeatureVector:
        """The served values, from the serving API (``featurebus.online_client``), in this workspace."""
        from featurebus.online_client import get_online_features

        return get_online_features(
            feature_service=self.name,
            join_keys=join_keys,
            request_data=request_data,
            include_join_keys_in_response=include_join_keys_in_response,
            workspace=self.workspace.name,
        )


class FeatureViewClient:
    """One feature view's values computed ad hoc from the offline store (any workspace kind), and
    (batch views of live workspaces) its materialization jobs (``featurebus.materialization``)."""

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name

    def get_features_for_events(self, events: pd.DataFrame, timestamp_key: str | None = None) -> TectonDataFrame:
        """``events`` plus one ``<view>__<feature>`` column per feature of the view, as of each row's time."""
        from featurebus.frames import TectonDataFrame
        from featurebus.platform.training.ranges import view_service
        from featurebus.platform.training.training_sets import get_features_for_events

        ws = self.workspace
        spec, service = view_service(ws.spec, self.name)
        ws.confirm_offline_read()
        return TectonDataFrame(
            get_features_for_events(spec, service, events, ws.offline_root, timestamp_key, ws.offline_data)
        )

    def get_online_features(
        self,
        join_keys: Mapping[str, Any],
        include_join_keys_in_response: bool = False,
        request_data: Mapping[str, Any] | None = None,
    ) -> FeatureVector:
        """The view's served values, from the serving API (``featurebus.online_client``), in this workspace."""
        from featurebus.online_client import get_online_features

        return get_online_features(
            feature_view=self.name,
            join_keys=join_keys,
            request_data=request_data,
            include_join_keys_in_response=include_join_keys_in_response,
            workspace=self.workspace.name,
        )

    def get_features_in_range(
        self, start_time: datetime, end_time: datetime, entities: pd.DataFrame | None = None
    ) -> TectonDataFrame:
        """Feature values valid in ``[start_time, end_time)``: join keys, features, ``_valid_from``
        and ``_valid_to`` (see ``featurebus.platform.training.ranges`` for how rows are formed)."""
        from featurebus.frames import TectonDataFrame
        from featurebus.platform.training.ranges import get_features_in_range

        ws = self.workspace
        ws.confirm_offline_read()
        return TectonDataFrame(
            get_features_in_range(ws.spec, self.name, start_time, end_time, ws.offline_root, entities, ws.offline_data)
        )

    def delete_keys(
        self,
        keys: pd.DataFrame | list[dict[str, Any]],
        online: bool = True,
        offline: bool = True,
        include_sources: bool = False,
    ) -> DeleteReceipt:
        """Delete the values of the entities in ``keys`` (one row of join-key values each), through
        the control plane (editor role; audited): online on every serving replica, offline by
        rewriting only the Parquet files holding their rows, and with ``include_sources`` the
        records of compacted source topics. Returns the receipt of what changed (``.to_pandas()``,
        ``print(receipt)``), including what could not be deleted and why. Running it again
        completes a delete that failed midway."""
        from featurebus.control_client import ControlClient
        from featurebus.platform.deletes.receipt import DeleteReceipt

        rows = keys if isinstance(keys, list) else keys.to_dict("records")
        client = ControlClient.from_config(self.workspace.home)
        try:
            body = {
                "view": self.name,
                "keys": [{str(k): v for k, v in row.items()} for row in rows],
                "online": online,
                "offline": offline,
                "include_sources": include_sources,
            }
            document = client.post(f"/v1/workspaces/{self.workspace.name}/deletes", body)
        finally:
            client.close()
        return DeleteReceipt.from_json(document)

    # -- materialization jobs (batch views of live workspaces), as in Tecton -----------------------
    def trigger_materialization_job(
        self,
        start_time: datetime,
        end_time: datetime,
        online: bool,
        offline: bool,
        use_tecton_managed_retries: bool = True,
        overwrite: bool = False,
    ) -> str:
        """Queue a materialization over ``[start_time, end_time)``; returns the job id."""
        ws = self.workspace
        if ws.via_control:
            from featurebus import materialization_control

            return materialization_control.trigger_materialization_job(
                ws.home,
                ws.name,
                self.name,
                start_time,
                end_time,
                online,
                offline,
                use_tecton_managed_retries,
                overwrite,
            )
        from featurebus import materialization

        return materialization.trigger_materialization_job(
            ws.spec,
            ws.bootstrap,
            self.name,
            start_time,
            end_time,
            online,
            offline,
            use_tecton_managed_retries,
            overwrite,
        )

    def list_materialization_jobs(self) -> list[Job]:
        ws = self.workspace
        if ws.via_control:
            from featurebus import materialization_control

            return materialization_control.list_materialization_jobs(ws.home, ws.name, self.name)
        from featurebus import materialization

        return materialization.list_materialization_jobs(ws.spec, ws.bootstrap, self.name)

    def get_materialization_job(self, job_id: str) -> Job:
        ws = self.workspace
        if ws.via_control:
            from featurebus import materialization_control

            return materialization_control.get_materialization_job(ws.home, ws.name, job_id)
        from featurebus import materialization

        return materialization.get_materialization_job(ws.spec, ws.bootstrap, job_id)

    def cancel_materialization_job(self, job_id: str) -> Job:
        """Request the cancel (the runner stops the job between chunks); returns the job as it was."""
        ws = self.workspace
        if ws.via_control:
            from featurebus import materialization_control

            return materialization_control.cancel_materialization_job(ws.home, ws.name, job_id)
        from featurebus import materialization

        return materialization.cancel_materialization_job(ws.spec, ws.bootstrap, job_id)

    def wait_for_materialization_job(self, job_id: str, timeout: timedelta | None = None) -> Job:
        """Block until the job ends; ``featurebus.exceptions.JobTimeoutError`` after ``timeout``."""
        ws = self.workspace
        if ws.via_control:
            from featurebus import materialization_control

            return materialization_control.wait_for_materialization_job(ws.home, ws.name, job_id, timeout)
        from featurebus import materialization

        return materialization.wait_for_materialization_job(ws.spec, ws.bootstrap, job_id, timeout)


class FeatureTableClient(FeatureViewClient):
    """A feature table: its values as a view's (point-in-time, in ranges), and ``ingest``."""

    def ingest(self, df: pd.DataFrame) -> dict[str, Any]:
        """Write the rows of ``df`` (join keys, features, the timestamp column) to the table through
        the ingestion API's path: every row validated against the table's schema first, and one
        bad row rejects them all (``RecordValidationError`` naming each) with nothing written.
        Returns once Kafka acknowledged every row (``acks=all``); the stream worker then makes
        them served and, with ``offline=True``, part of training sets.

        A workspace read through the control plane (logged in, no ``bootstrap``) sends the rows to
        the serving API's ``POST /ingest`` with the login's key, in batches
        (``featurebus.ingest_serving``): no Kafka credentials, and the key needs the ``editor``
        role (``PermissionDeniedError`` naming it otherwise). The serving API is ``FEATUREBUS_URL``,
        else the login's (``featurebus login --serving-url``), else that of the ``featurebus up``
        running from the home. With ``bootstrap`` (or no login) it writes to that bus itself, with
        its Kafka credentials (idempotent producer)."""
        from featurebus.feature_table import table_records

        ws = self.workspace
        items = table_records(ws.spec.feature_table(self.name), df)
        if ws.via_control:
            from featurebus.ingest_serving import ingest_through_serving
            from featurebus.platform.config import control_login, serving_url_of_login

            key = control_login(ws.home)[1]
            if key is None:
                raise InvalidRequestError("no API key in the login: `featurebus login --url URL --key KEY`")
            return ingest_through_serving(serving_url_of_login(ws.home), key, ws.name, self.name, items)
        from featurebus.platform.config import resolve_bootstrap
        from featurebus.serving.ingest import IngestService, KafkaRecordSink

        sink = KafkaRecordSink(resolve_bootstrap(ws.bootstrap))
        try:
            service = IngestService(lambda: {ws.name: ws.spec}, sink)
            return service.ingest(ws.name, {self.name: items}, dry_run=False, max_records=max(1, len(items)))
        finally:
            sink.close()


class Workspace:
    def __init__(
        self,
        spec: WorkspaceSpec,
        offline_root: Path,
        offline_data: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
        bootstrap: str | None = None,
        home: Path | None = None,
        via_control: bool = False,
    ) -> None:
        self.spec = spec
        self.home = home  # whose control-plane login deletes and jobs use (None: the default home)
        # The cluster it was read from: materialization jobs and FeatureTable.ingest of a workspace
        # read directly go there (None: the configured cluster).
        self.bootstrap = bootstrap
        # Read through the control plane: job methods go through it too, and FeatureTable.ingest
        # through the serving API (no Kafka credentials).
        self.via_control = via_control
        self.offline_root = offline_root
        # Where each source's offline records are; None: the workspace's own (a live workspace).
        self.offline_data = offline_data

    @property
    def name(self) -> str:
        return self.spec.name

    def confirm_offline_read(self) -> None:
        """Before reading offline files: the control plane confirms the logged-in caller may read
        every workspace they belong to (``featurebus.offline_access``); no login, no question."""
        from featurebus.offline_access import confirm_offline_read, read_workspaces

        confirm_offline_read(read_workspaces(self.name, self.offline_data), self.offline_root.parent)

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def live(self) -> bool:
        return self.spec.live

    def list_feature_services(self) -> list[str]:
        return [s.name for s in self.spec.feature_services]

    def list_feature_views(self) -> list[str]:
        return (
            [v.name for v in self.spec.stream_feature_views if not v.feature_table]
            + [v.name for v in self.spec.batch_feature_views]
            + [v.name for v in self.spec.realtime_feature_views]
        )

    def list_feature_tables(self) -> list[str]:
        return [t.name for t in self.spec.feature_tables]

    def get_feature_table(self, name: str) -> FeatureTableClient:
        self.spec.feature_table(name)  # NotFoundError listing the known tables
        return FeatureTableClient(self, name)

    def get_feature_service(self, name: str) -> FeatureServiceClient:
        self.spec.service(name)  # NotFoundError listing the known services
        return FeatureServiceClient(self, name)

    def save_dataset(self, name: str, df: pd.DataFrame) -> Path:
        """Keep ``df`` (e.g. a training set) under ``name`` next to the offline store, as the
        reference drift is measured against (``featurebus.platform.offline.datasets``)."""
        from featurebus.platform.offline.datasets import save_dataset

        return save_dataset(self.offline_root, self.name, name, df)

    def get_dataset(self, name: str) -> TectonDataFrame:
        from featurebus.frames import TectonDataFrame
        from featurebus.platform.offline.datasets import read_dataset

        return TectonDataFrame(read_dataset(self.offline_root, self.name, name))

    def list_datasets(self) -> list[str]:
        from featurebus.platform.offline.datasets import list_datasets

        return list_datasets(self.offline_root, self.name)

    def get_feature_view(self, name: str) -> FeatureViewClient:
        if not self.spec.is_realtime(name) and not self.spec.is_batch(name):
            self.spec.view(name)  # NotFoundError listing the known views
        return FeatureViewClient(self, name)


def get_workspace(name: str, bootstrap: str | None = None, home: Path | None = None) -> Workspace:
    """The workspace's current applied version: from the control plane when a login is configured
    and no ``bootstrap`` is given (a workspace the caller holds no role in is refused, naming the
    role), else from the registry on the bus (``bootstrap``, or the configured cluster)."""
    from featurebus.offline_access import applied_specs_via_control
    from featurebus.platform.config import home_dir
    from featurebus.platform.offline.locations import offline_locations

    root = home.resolve() if home else home_dir()
    specs = None if bootstrap else applied_specs_via_control(root)
    via_control = specs is not None
    if specs is None:
        from featurebus.platform.config import resolve_bootstrap
        from featurebus.platform.registry import KafkaRegistry

        bootstrap = resolve_bootstrap(bootstrap)
        specs = KafkaRegistry(bootstrap).list()
    spec = specs.get(name)
    if spec is None:
        if via_control:
            _ask_control_plane_about(name, root)  # a missing role is named (403), an unknown name is 404
        known = ", ".join(sorted(specs)) or "none"
        raise NotFoundError(
            f"no workspace named {name!r} (known: {known}); create it with "
            f"`featurebus workspace create {name}` and `featurebus apply` a repository to it"
        )
    offline_data = None if spec.live else offline_locations(spec, specs)
    return Workspace(spec, root / "offline", offline_data, bootstrap, home=root, via_control=via_control)


def _ask_control_plane_about(name: str, home: Path) -> None:
    """A workspace missing from the caller's list: the control plane says why (the role it takes,
    or that no such workspace exists) with its own error."""
    from featurebus.control_client import ControlClient

    client = ControlClient.from_config(home)
    try:
        client.get(f"/v1/workspaces/{name}")
    finally:
        client.close()
