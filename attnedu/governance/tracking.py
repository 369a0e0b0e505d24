"""A model registry on this machine: MLflow, offline and quiet, in one folder (chapter 13).

MLflow records *runs* (the settings, the measurements and the files of each training run) and
keeps a *model registry*: named models, their numbered versions, each linked to the run that made
it, and *aliases* such as ``champion`` that point at one version and can be moved. A tracking
server keeps the records in a database and the files ("artifacts") in a file or object store.
Here both sit in one folder::

    <folder>/mlflow.db       runs, parameters, metrics, registered models, versions (SQLite)
    <folder>/artifacts/      the files each run logged, one folder per run

* :func:`open_tracking`: point MLflow at that folder; a :class:`Tracking` comes back, whose
  :meth:`~Tracking.close` lets go of the database, so that the folder can be removed (and another
  folder opened in the same process).
* :func:`checkpoint_record`: what a GPT checkpoint (:meth:`attnedu.models.GPT.save`) says about the
  run that made it, split into MLflow's parameters and metrics.

Everything else is MLflow's own API (``mlflow.start_run``, ``mlflow.log_metric``,
``MlflowClient().create_model_version``, ...), which the chapter calls directly: the same calls
work against a team's tracking server once ``mlflow.set_tracking_uri`` names it.

This module imports neither mlflow nor torch until it is used: ``attnedu.governance`` works
without them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Tracking", "open_tracking", "checkpoint_record", "OFFLINE_ENV", "DB_NAME", "ARTIFACTS"]

DB_NAME = "mlflow.db"
ARTIFACTS = "artifacts"

#: Set before mlflow is imported. MLflow 3 sends usage telemetry unless told not to (without
#: these, its first logged call looks up ``config.mlflow-telemetry.io``, and ``import mlflow``
#: writes an id to ``~/.config/mlflow``): ``mlflow.telemetry.utils.is_telemetry_disabled`` reads
#: the first two, when ``import mlflow`` makes its telemetry client. The third turns off the
#: progress bars of downloads.
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

_QUIET_LOGGERS = ("mlflow", "alembic")  # "Creating initial MLflow database tables...", migrations


def _mlflow():
    """mlflow, imported with :data:`OFFLINE_ENV` set (and its telemetry stopped if an earlier
    import had started it)."""
    os.environ.update(OFFLINE_ENV)
    import mlflow
    from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client

    client = get_telemetry_client()
    if client is not None:  # mlflow was imported before the switches were set
        client._clean_up()  # stops its threads; nothing was sent before its first record
        set_telemetry_client()  # reads the switches again: no client
    return mlflow


def _dispose(uri: str) -> None:
    """Close MLflow's database connections to ``uri`` and forget its stores of that database.

    MLflow keeps one SQLAlchemy engine per database URI (one for runs, one for the registry) and
    caches its stores by URI, for the life of the process: without this, the folder could not be
    removed on Windows, and a new database at the same path would be read through stale ones."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for store_class in (TrackingStore, RegistryStore):
        engine = store_class._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
    for registry in (TrackingStoreRegistry, ModelRegistryStoreRegistry):
        registry._get_store_with_resolved_uri.cache_clear()  # rebuilt on the next call, from the URI


@dataclass
class Tracking:
    """MLflow pointed at one folder: its database ``uri`` (``sqlite:///<folder>/mlflow.db``), for
    runs and for the registry, ``artifacts`` (the folder of the files the runs log) and the
    ``experiment_id`` that new runs go to. Made by :func:`open_tracking`; :meth:`close` it (or use
    it in a ``with`` block) before the folder is removed."""

    folder: Path
    uri: str
    artifacts: Path
    experiment_id: str
    _before: dict = field(default_factory=dict, repr=False)
    closed: bool = False

    def close(self) -> None:
        """End any run still open, close the database connections, and give MLflow back the
        tracking and registry URIs, the experiment and the log levels it had before. Safe to
        call twice."""
        if self.closed:
            return
        import mlflow
        from mlflow.tracking import fluent
        from mlflow.tracking._model_registry import utils as registry_utils

        while mlflow.active_run() is not None:
            mlflow.end_run()
        before = self._before
        mlflow.set_tracking_uri(before["tracking_uri"])  # None: unset, as it was
        registry_utils._registry_uri = before["registry_uri"]
        fluent._active_experiment_id = before["experiment_id"]
        for name, value in before["env"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in before["levels"].items():
            logging.getLogger(name).setLevel(level)
        _dispose(self.uri)
        self.closed = True
        global _current
        if _current is self:
            _current = None

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")
_current: Tracking | None = None  # the one open now


def open_tracking(folder, experiment: str = "attnedu") -> Tracking:
    """Point MLflow at ``folder``, offline and quietly, and make ``experiment`` the active one.

    * **offline**: MLflow's telemetry is off (:data:`OFFLINE_ENV`) and the tracking server is a
      SQLite file, so nothing reaches the network;
    * **in the folder**: the database ``<folder>/mlflow.db`` keeps the runs and the registry, and
      the experiment keeps its files in ``<folder>/artifacts`` (made if absent); nothing goes to
      ``./mlruns``, ``./mlflow.db`` or the home folder;
    * **quiet**: MLflow's and alembic's INFO lines (the database's creation) are not shown, nor
      are the progress bars of downloads.

    Opening an existing folder again finds its runs and models. Call :meth:`Tracking.close`
    before removing the folder; opening another folder (or the same one again) closes the one
    that is open, since MLflow has one tracking URI per process. The first open of a new folder
    creates MLflow's tables, which takes a second or two. The switches of :data:`OFFLINE_ENV`
    stay set after :meth:`~Tracking.close` (MLflow reads the telemetry ones when it is imported).
    """
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file: open_tracking needs a folder for the database and the artifacts")
    if not isinstance(experiment, str) or not experiment.strip():
        raise ValueError(f"experiment must be a non-empty name, got {experiment!r}")
    global _current
    if _current is not None:
        _current.close()
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    before = {"tracking_uri": tracking_utils._tracking_uri, "registry_uri": registry_utils._registry_uri,
              "experiment_id": fluent._active_experiment_id, "env": {k: os.environ.get(k) for k in _URI_ENV},
              "levels": {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    artifacts = folder / ARTIFACTS
    artifacts.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(folder / DB_NAME).as_posix()}"
    tracking = Tracking(folder, uri, artifacts, "", before)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = MlflowClient(uri, uri)  # creates the tables of a new database
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else \
            client.create_experiment(experiment, artifact_location=artifacts.as_uri())
        mlflow.set_experiment(experiment_id=experiment_id)
    except BaseException:
        tracking.close()
        raise
    tracking.experiment_id = experiment_id
    _current = tracking
    return tracking


def checkpoint_record(path) -> tuple[dict, dict]:
    """What a checkpoint written by :meth:`attnedu.models.GPT.save` records about the run that
    made it, as MLflow would log it: ``(params, metrics)``.

    * ``params``: the model's shape (every field of its ``GPTConfig``), the dtype of its stored
      weights (``weights``: ``"float32"``, ``"float16"``) and the extra entries that are settings
      (numbers, text, booleans: for the shipped checkpoint ``iters``, ``command``,
      ``python_version``...), all as text, which is how MLflow stores parameters. The vocabulary
      is left out: it is part of the model, kept in the file itself.
    * ``metrics``: ``{name: [(step, value), ...]}``. A ``history`` entry (a dict of
      ``eval_iters`` and lists of the same length, as :class:`attnedu.train.History` holds
      them) gives whole curves; otherwise each number with ``loss`` in its name is one point at
      step ``iters`` (the shipped checkpoint keeps its final ``train_loss`` and ``val_loss``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file: pass the path of a checkpoint written by GPT.save")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise ValueError(f"{path} is not a GPT checkpoint: GPT.save writes a dict with 'config' and 'state_dict'")
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in checkpoint["state_dict"].values()})
    params = {**{k: str(v) for k, v in checkpoint["config"].items()}, "weights": ",".join(dtypes)}
    metrics: dict[str, list[tuple[int, float]]] = {}
    notes = {k: v for k, v in checkpoint.items() if k not in ("config", "state_dict", "vocab")}
    history = notes.pop("history", None)
    if history is not None:
        steps = [int(s) for s in history["eval_iters"]]
        for name, values in history.items():
            if name != "eval_iters":
                if len(values) != len(steps):
                    raise ValueError(f"{path}: history[{name!r}] has {len(values)} values for {len(steps)} "
                                     "eval_iters; a curve needs one value per step")
                metrics[name] = [(s, float(v)) for s, v in zip(steps, values)]
    for name, value in notes.items():
        if isinstance(value, float) and "loss" in name and history is None:
            if "iters" not in notes:
                raise ValueError(f"{path} records {name} but not 'iters', the step it was measured at")
            metrics[name] = [(int(notes["iters"]), value)]
        elif isinstance(value, (str, int, float, bool)) and name not in metrics:
            params[name] = str(value)
    return params, metrics
