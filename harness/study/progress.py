"""Progress a person can follow at any size of study.

``events``: one line per trial start and end, with the running tally (for logs, CI,
nohup). ``bar``: one bar per seed, redrawn in place on a terminal: trials done out of
the seed's total, running, stopped, errored, the best so far, elapsed and ETA.
``quiet``: nothing but errors and retries, which every mode prints as lines. The tally
comes from the results writer, which keeps it as events arrive: no event costs a scan
of the study's trials.
"""
from __future__ import annotations

import sys
import time

from harness.study.results import LiveCallback, ResultsWriter
from harness.study.search import stopped_early

MODES = ("auto", "events", "bar", "quiet")


def choose_mode(mode: str) -> str:
    """``auto``: the bar on a terminal, event lines when the output goes to a file or a pipe."""
    if mode != "auto":
        return mode
    return "bar" if sys.stdout.isatty() else "events"


class Progress(LiveCallback):
    """Errors and retries as lines; subclasses add the rest."""

    def __init__(self, writer: ResultsWriter) -> None:
        super().__init__(f"{writer.spec.study}#progress")
        self.writer = writer
        self.start = time.monotonic()

    def start_seed(self, seed: int, done: int) -> None:
        """A seed's search begins (``done``: its trials an interrupted run finished)."""

    def end_seed(self) -> None:
        """The seed's search has ended."""

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        print(f"[{elapsed:6.0f}s] {text}", file=sys.stdout, flush=True)

    def tally(self) -> str:
        counts, top, metric = self.writer.counts(), self.writer.best_trial(), self.writer.metric
        best_text = f"best {metric} {top[metric]:.4f} ({top['trial_id']})" if top else "no finished trial yet"
        return (f"{counts.get('running', 0)} running, {counts.get('completed', 0)} completed, "
                f"{counts.get('stopped', 0)} stopped, {counts.get('error', 0)} errored{_infeasible(counts)} | "
                f"{best_text}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        row = self.writer.trials.get(self.writer._id(trial), {})
        self.line(f"RETRY    {self.writer._id(trial)}  from its last report ({row.get('error')}) | {self.tally()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        row = self.writer.trials.get(self.writer._id(trial), {})
        self.line(f"ERROR    {self.writer._id(trial)}  {row.get('error')} | {self.tally()}")


class QuietProgress(Progress):
    pass


class EventLines(Progress):
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        knobs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(trial.config.items()))
        self.line(f"start    {self.writer._id(trial)}  {knobs}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        metric = self.writer.metric
        value = result.get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, float) else ""
        epochs = result.get("training_iteration", "?")
        verb = "stopped " if stopped_early(result, self.writer.spec.budget.epochs) else "finished"
        test = f", test_acc {result['test_acc']:.4f}" if "test_acc" in result else ""
        self.line(f"{verb} {self.writer._id(trial)}  {shown}{test} at epoch {epochs} | {self.tally()}")


class StatusBar(Progress):
    """A tqdm bar per seed; lines (errors, retries) are written above it."""

    REDRAW_S = 1.0  # elapsed time and ETA move between events too

    def __init__(self, writer: ResultsWriter, file=None) -> None:
        super().__init__(writer)
        self.file = file
        self.bar = None
        self.seed = 0
        self._drawn = 0.0

    def start_seed(self, seed: int, done: int) -> None:
        from tqdm import tqdm

        self.end_seed()
        self.seed = seed
        # tqdm writes ", " and the postfix (the tally) after the times.
        self.bar = tqdm(total=self.writer.spec.search.num_samples, initial=done, desc=f"seed {seed}",
                        unit="trial", file=self.file or sys.stdout, dynamic_ncols=True, leave=True,
                        mininterval=0.2, bar_format="{desc}: {n_fmt}/{total_fmt} trials |{bar}| "
                                                    "[{elapsed}<{remaining}]{postfix}")
        self._status()

    def end_seed(self) -> None:
        if self.bar is not None:
            self._status()
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.bar is None:
            return super().line(text)
        from tqdm import tqdm

        elapsed = time.monotonic() - self.start
        tqdm.write(f"[{elapsed:6.0f}s] {text}", file=self.file or sys.stdout)

    def _status(self) -> None:
        if self.bar is None:
            return
        counts, top, metric = self.writer.counts(self.seed), self.writer.best_trial(self.seed), self.writer.metric
        best = f", best {metric} {top[metric]:.4f}" if top else ""
        self.bar.set_postfix_str(f"{counts.get('running', 0)} running, {counts.get('stopped', 0)} stopped, "
                                 f"{counts.get('error', 0)} errored{_infeasible(counts)}{best}", refresh=False)
        self.bar.refresh()
        self._drawn = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._status()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.bar is not None:
            self.bar.update(1)
        self._status()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        super().on_trial_error(iteration, trials, trial, **info)
        if self.bar is not None:
            self.bar.update(1)
        self._status()

    def on_step(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._drawn >= self.REDRAW_S:
            self._status()


PROGRESS = {"events": EventLines, "bar": StatusBar, "quiet": QuietProgress}


def _infeasible(counts: dict[str, int]) -> str:
    """Draws over search.constraints that never trained, when the study has limits and some."""
    return f", {counts['infeasible']} over the limits (untrained)" if counts.get("infeasible") else ""


def make_progress(mode: str, writer: ResultsWriter) -> Progress:
    return PROGRESS[choose_mode(mode)](writer)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
