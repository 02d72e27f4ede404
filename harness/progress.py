"""Progress lines a person can follow: one per trial event, with the running tally."""
from __future__ import annotations

import sys
import time

from harness.results import LiveCallback, ResultsWriter, best
from harness.search import stopped_early


class ProgressPrinter(LiveCallback):
    def __init__(self, writer: ResultsWriter) -> None:
        super().__init__(f"{writer.spec.study}#progress")
        self.writer = writer
        self.start = time.monotonic()
        objective = writer.spec.search.objectives[0]
        self.metric, self.mode = objective.metric, objective.mode

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        print(f"[{elapsed:6.0f}s] {text}", file=sys.stdout, flush=True)

    def _tally(self) -> str:
        counts = self.writer.counts()
        rows = [r for r in self.writer.trials.values() if r["status"] == "completed"]
        top = best(rows, self.metric, self.mode)
        best_text = f"best {self.metric} {top[self.metric]:.4f} ({top['trial_id']})" if top else "no finished trial yet"
        return (f"{counts.get('running', 0)} running, {counts.get('completed', 0)} completed, "
                f"{counts.get('stopped', 0)} stopped, {counts.get('error', 0)} errored | {best_text}")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        knobs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(trial.config.items()))
        self._say(f"start    {self.writer._id(trial)}  {knobs}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        value = result.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else ""
        epochs = result.get("training_iteration", "?")
        verb = "stopped " if stopped_early(result, self.writer.spec.budget.epochs) else "finished"
        test = f", test_acc {result['test_acc']:.4f}" if "test_acc" in result else ""
        self._say(f"{verb} {self.writer._id(trial)}  {shown}{test} at epoch {epochs} | {self._tally()}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        row = self.writer.trials.get(self.writer._id(trial), {})
        self._say(f"RETRY    {self.writer._id(trial)}  from its last report ({row.get('error')}) | {self._tally()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        row = self.writer.trials.get(self.writer._id(trial), {})
        self._say(f"ERROR    {self.writer._id(trial)}  {row.get('error')} | {self._tally()}")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
