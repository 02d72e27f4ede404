"""Progress at any size: the tally kept as events arrive, a bar redrawn in place on a
terminal, event lines in a log, errors always as lines (no Ray cluster needed)."""
from __future__ import annotations

import io
import random
from types import SimpleNamespace

import pytest

from harness.store.tables import read_table
from harness.study.progress import EventLines, StatusBar, choose_mode
from harness.study.results import ResultsWriter, best
from tests.support.specs import small_spec


class NoScan(dict):
    """The writer's trials, refusing the walks over every trial that an event must not make."""

    def _refuse(self, *args):
        raise AssertionError("an event walked over every trial")

    __iter__ = values = items = keys = _refuse


def _events(writer: ResultsWriter, progress, n: int, seeds=(0,), error_every: int = 0, rng=None):
    rng = rng or random.Random(0)
    for seed in seeds:
        writer.start_seed(seed)
        progress.start_seed(seed, done=0)
        for i in range(n):
            trial = SimpleNamespace(trial_id=f"t{i}", config={"lr": 0.01}, last_result={},
                                    error_file=None)
            writer.on_trial_start(0, [], trial)
            progress.on_trial_start(0, [], trial)
            epochs = rng.choice([1, 3])
            for epoch in range(1, epochs + 1):
                writer.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": rng.random(),
                                                      "training_iteration": epoch})
            trial.last_result = {"training_iteration": epochs, "epoch": epochs, "val_acc": rng.random()}
            if error_every and i % error_every == error_every - 1:
                writer.on_trial_error(0, [], trial)
                progress.on_trial_error(0, [], trial)
            else:
                writer.on_trial_complete(0, [], trial)
                progress.on_trial_complete(0, [], trial)
        progress.end_seed()


def test_the_tally_is_kept_per_event_without_walking_the_trials(tmp_path, capsys):
    writer = ResultsWriter(small_spec(**{"budget.epochs": "3", "seeds": "[0, 1]"}), tmp_path, None)
    writer.trials = NoScan()
    _events(writer, EventLines(writer), 30, seeds=(0, 1), error_every=7)
    writer.get_state()  # Tune's snapshot flushes the reports
    rows = read_table(tmp_path, "trials")
    for seed in (0, 1):
        mine = rows[rows["seed"] == seed]
        assert writer.counts(seed) == mine["status"].value_counts().to_dict()
        top = best(mine[mine["status"] == "completed"].to_dict("records"), "val_acc", "max")
        assert writer.best_trial(seed)["trial_id"] == top["trial_id"]
    assert writer.counts() == rows["status"].value_counts().to_dict()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 120 and sum("ERROR" in line for line in lines) == 8


def test_the_bar_redraws_in_place_and_writes_errors_as_lines(tmp_path):
    writer = ResultsWriter(small_spec(**{"budget.epochs": "3", "search.num_samples": "200"}), tmp_path, None)
    screen = io.StringIO()
    bar = StatusBar(writer, file=screen)
    _events(writer, bar, 200, error_every=50)
    text = screen.getvalue()
    lines = text.split("\n")
    assert len(lines) <= 8  # four error lines and the finished bar, not a line per event
    assert sum(line.split("\r")[-1].startswith("[") and "ERROR" in line for line in lines) == 4
    final = lines[-2].split("\r")[-1]
    assert final.startswith("seed 0: 200/200 trials") and "errored" in final and "best val_acc" in final


@pytest.mark.parametrize("mode, terminal, chosen", [
    ("auto", True, "bar"), ("auto", False, "events"), ("events", True, "events"), ("quiet", False, "quiet")])
def test_auto_draws_the_bar_on_a_terminal_only(monkeypatch, mode, terminal, chosen):
    monkeypatch.setattr("sys.stdout", SimpleNamespace(isatty=lambda: terminal))
    assert choose_mode(mode) == chosen
