"""Ray's MLflow logger, one run per trial also across ``--resume``.

Ray's ``MLflowLoggerCallback`` keeps which run belongs to which trial in the driver that
started it; Tune restores the callback into a resumed study's driver with that map
emptied, so a trial the resumed study continues would start a second run. ``TrialRuns``
first looks for the run of the same trial (its ``trial_name`` tag, which holds the trial's
id, and the study's ``harness.*`` tags) and goes on in it. Imported only for a spec with
``tracking.mlflow`` (it imports MLflow).
"""
from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback


class TrialRuns(MLflowLoggerCallback):
    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs and (run_id := self.earlier_run(str(trial))) is not None:
            self._trial_runs[trial] = run_id
        super().log_trial_start(trial)

    def earlier_run(self, trial_name: str) -> str | None:
        """The run an earlier driver started for this trial of this study, if any."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return None
        wanted = {"trial_name": trial_name,
                  **{key: str(value) for key, value in (self.tags or {}).items() if key.startswith("harness.")}}
        query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in wanted.items())
        runs = client.search_runs([experiment.experiment_id], query, max_results=1,
                                  order_by=["attribute.start_time ASC"])
        return runs[0].info.run_id if runs else None
