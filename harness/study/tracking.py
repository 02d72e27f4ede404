"""Experiment trackers, opt-in: ``tracking: {mlflow: {...}, tensorboard: true}`` in a spec.

Each maps to Ray Tune's own logger callback (``MLflowLoggerCallback``,
``TBXLoggerCallback``): one MLflow run per trial, holding its knobs as parameters and
every report's metrics by epoch; TensorBoard event files in each trial's folder beside
its checkpoints (in the bucket, for a study on object storage). Off by default: every
logger costs the driver time at each report (benchmarks/trial_overhead.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec.schema import StudySpec


def tracking_callbacks(spec: StudySpec, seed: int) -> list[Any]:
    """Tune callbacks for the trackers the spec asks for; none by default."""
    callbacks: list[Any] = []
    if spec.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if spec.tracking.mlflow is not None:
        options = spec.tracking.mlflow
        uri = str(options.get("tracking_uri") or default_mlflow_uri())
        reachable(uri)
        tags = {**options.get("tags", {}), "harness.study": spec.study, "harness.seed": str(seed)}
        from harness.study.mlflow_runs import TrialRuns  # imports MLflow: only when asked for

        callbacks.append(TrialRuns(tracking_uri=uri, experiment_name=options.get("experiment_name") or spec.study,
                                   tags=tags))
    return callbacks


def default_mlflow_uri() -> str:
    """MLflow 3's recommended local store, a SQLite file in the working folder (its file store,
    ``./mlruns``, is in maintenance and refused unless MLFLOW_ALLOW_FILE_STORE is set)."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def reachable(uri: str) -> None:
    """Open the tracking store now: a wrong URI is one line before any trial, not a trial's error."""
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow's stores raise their own kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"tracking.mlflow: cannot use the tracking store {uri} ({first})") from None
