"""Search and early stopping: Optuna through Ray Tune's OptunaSearch, and ASHA.

:class:`StudySearch` and :class:`StudyScheduler` extend Ray's classes through
attributes Ray does not document (``RAY_INTERNALS``); ``pyproject.toml`` bounds
``ray[tune]`` to the release they were tested with, and both refuse, in one
line, a Ray that no longer has them.
"""
from __future__ import annotations

import math
import pickle
import warnings
from typing import Any

import numpy as np
import optuna
import ray
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

import methods
from harness.errors import HarnessError
from harness.spec.schema import HARNESS_KNOBS, StudySpec
from harness.store import journal
from harness.study.constraints import EXCESS, DrawGate, Verdict
from methods.study import Distribution

optuna.logging.set_verbosity(optuna.logging.WARNING)
# A trial continued from a checkpoint reports again the epochs after it, which Optuna's
# storage may hold already (the driver died between snapshots): the first value stands.
warnings.filterwarnings("ignore", message="The reported value is ignored because this `step=", category=UserWarning)

RAY_INTERNALS = {OptunaSearch: ("_ot_study", "_ot_trials", "_completed_trials", "_storage", "_study_name",
                                 "_sampler"),
                 ASHAScheduler: ("_num_stopped", "_metric", "_time_attr")}


def require_internals(obj: Any, base: type) -> None:
    """Refuse a Ray whose ``base`` class no longer keeps what this module reads of it."""
    missing = [name for name in RAY_INTERNALS[base] if not hasattr(obj, name)]
    if missing:
        raise HarnessError(f"ray {ray.__version__}: its {base.__name__} no longer has {', '.join(missing)}, which "
                           f"harness/study/search.py extends; install the ray[tune] release pyproject.toml names")


def stopped_early(result: dict[str, Any] | None, budget: int) -> bool:
    """A trial that ended without error before its last epoch was stopped by the scheduler."""
    return bool(result) and result.get(TRAINING_ITERATION, budget) < budget


class StudySearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials ASHA stopped.

    Ray's OptunaSearch records a stopped trial as COMPLETE with the metric of
    its last rung, which lets a half-trained trial compete with finished ones.
    Here it is PRUNED: for one objective Optuna keeps its last intermediate
    value (TPE treats it as pruned), for several it counts only finished trials.
    """

    def __init__(self, *args: Any, budget: int, gate: DrawGate | None = None, record: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require_internals(self, OptunaSearch)
        self.budget = budget
        self._last_step: dict[str, int] = {}  # by running trial: the step Optuna last got
        # search.constraints: draws over a limit before training are told to Optuna and never run;
        # ``record`` (the ResultsWriter, pickled by name) keeps a row of each.
        self.gate, self.record = gate, record
        self._estimates: dict[str, dict[str, Any]] = {}  # by running trial: the gate's excess figures

    def suggest(self, trial_id: str) -> dict | str | None:
        """A draw within the limits: one over them is told to Optuna as infeasible, recorded, and
        replaced by another, up to ``MAX_REDRAWS`` per trial (then the search ends, said why)."""
        for _ in range(MAX_REDRAWS):
            config = super().suggest(trial_id)
            if self.gate is None or not isinstance(config, dict):
                return config
            verdict = self.gate(config)
            if verdict.feasible:
                self._estimates[trial_id] = verdict.judged
                return config
            self._tell_infeasible(self._ot_trials.pop(trial_id), config, verdict)
        print(f"search ended early: {MAX_REDRAWS} draws in a row were over search.constraints; the limits "
              f"leave too little of the space (loosen them or narrow the space)", flush=True)
        if hasattr(self.record, "search_gave_up"):
            self.record.search_gave_up()
        return Searcher.FINISHED

    def _tell_infeasible(self, ot_trial: optuna.Trial, config: dict[str, Any], verdict: Verdict) -> None:
        set_constraints(ot_trial, verdict.judged)
        if isinstance(self.metric, list):  # NSGA-II ranks complete trials: the worst values, over the limits
            worst = [verdict.figures.get(m, math.inf) if mode == "min" else -math.inf
                     for m, mode in zip(self.metric, self.mode, strict=True)]
            self._ot_study.tell(ot_trial, worst, state=TrialState.COMPLETE)
        else:  # TPE ranks it by its excess, before any value
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
        if hasattr(self.record, "record_infeasible"):
            self.record.record_infeasible(ot_trial.number, config, verdict)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:  # see restore
            super().on_trial_result(trial_id, result)
            self._last_step[trial_id] = result.get(TRAINING_ITERATION)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        last_step = self._last_step.pop(trial_id, None)
        if trial_id in self._completed_trials:  # see restore
            return None
        step = (result or {}).get(TRAINING_ITERATION)
        if not error and not isinstance(self.metric, list) and (result or {}).get(self.metric) is not None \
                and last_step != step:
            # Tune passes the report that ended a trial (ASHA's stop, or the budget's) here, not to
            # on_trial_result: Optuna gets it as the trial's last intermediate value too, which
            # TPE ranks pruned trials by.
            self._ot_trials[trial_id].report(result[self.metric], step)
        estimate = self._estimates.pop(trial_id, {})
        if not error and self.gate is not None and trial_id in self._ot_trials:
            # The trial's own figures where it measured them (all of them when it ran its budget).
            measured = {k: v for k, v in (result or {}).items() if k.startswith(EXCESS) and not _nan(v)}
            set_constraints(self._ot_trials[trial_id], {**estimate, **measured})
        if error or not stopped_early(result, self.budget):
            return super().on_trial_complete(trial_id, result, error)
        self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    # Tune's snapshots keep the searcher without its Optuna storage, which holds the trials
    # itself (harness.store.journal); a restored searcher reopens it.

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        """The searcher as Tune's last snapshot saved it, with the storage's view of its trials."""
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))
        if self._storage is None:
            return
        # The storage may be ahead of this state (a driver killed between snapshots): a trial it
        # holds as finished keeps that record when Tune runs it again from a checkpoint, and a
        # trial asked after the snapshot fails (Tune asks for a new one in its place).
        known = {trial._trial_id: tid for tid, trial in self._ot_trials.items()}
        for trial in self._ot_study.get_trials(deepcopy=False):
            if trial._trial_id not in known:
                if not trial.state.is_finished():
                    self._ot_study.tell(trial.number, state=TrialState.FAIL)
            elif trial.state.is_finished():
                self._completed_trials.add(known[trial._trial_id])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._storage is not None:
            state.update(_ot_study=None, _storage=None,
                         _ot_trials={tid: trial._trial_id for tid, trial in self._ot_trials.items()})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A searcher saved before search.constraints existed has no gate: it searches as it did.
        self.__dict__.update({"gate": None, "record": None, "_estimates": {}, **state})
        if self._ot_study is not None or self._study_name == "optuna":  # in memory, pickled whole
            return
        self._storage = journal.reopen(self._study_name)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage, sampler=self._sampler)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, trial_id) for tid, trial_id in self._ot_trials.items()}

    @property
    def optuna_study(self) -> optuna.Study:
        return self._ot_study


MAX_REDRAWS = 200  # draws over the limits in a row before a search gives up


def _nan(value: Any) -> bool:
    return not isinstance(value, (int, float)) or math.isnan(value)


def set_constraints(ot_trial: optuna.Trial, judged: dict[str, Any]) -> None:
    """Each limit's excess (``excess@COLUMN``) as an Optuna constraint: feasible at 0 or below."""
    for key, value in judged.items():
        if key.startswith(EXCESS) and not _nan(value):
            ot_trial.set_constraint(key[len(EXCESS):], float(value))


def optuna_space(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The searched knobs as Optuna distributions; an integer knob draws whole numbers
    under ``uniform`` and ``loguniform`` too (the latter on a log scale)."""
    method = methods.METHODS.get(spec.method)

    def convert(name: str, d: Distribution) -> BaseDistribution:
        if d.kind == "categorical":
            return CategoricalDistribution(d.args)
        if d.kind == "int" or (name not in HARNESS_KNOBS and method.param_type(name) is int):
            return IntDistribution(int(d.args[0]), int(d.args[1]), log=d.kind == "loguniform")
        return FloatDistribution(*d.args, log=d.kind == "loguniform")

    return {name: convert(name, d) for name, d in spec.searched_params().items()}


def startup_trials(spec: StudySpec) -> int:
    """Random trials before TPE models the results: ``search.startup_trials``, else
    a quarter of ``num_samples``, 4 to 10.

    Optuna's default is 10 at any study size, which leaves a 16-trial study
    random for 10 trials and TPE-guided for 6; a quarter gives TPE 12 of 16,
    and studies of 40 trials or more keep Optuna's 10.
    """
    if spec.search.startup_trials is not None:
        return spec.search.startup_trials
    return max(4, min(10, spec.search.num_samples // 4))


def describe_searcher(spec: StudySpec) -> str:
    if not spec.searched_params():
        return "none (every knob fixed)"
    return f"tpe ({startup_trials(spec)} random startup trials)" if spec.sampler == "tpe" else spec.sampler


def make_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    kind = spec.sampler
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        # A population well below num_samples, so small studies still evolve.
        population = max(4, min(50, spec.search.num_samples // 4))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    # Optuna 5's defaults, spelled out so that an Optuna 4 install (independent TPE,
    # no liar) searches as the published figures did: one model of all knobs
    # together for one objective, and a constant liar, so that trials asked
    # while others still run are not drawn next to them.
    return optuna.samplers.TPESampler(n_startup_trials=startup_trials(spec), seed=seed,
                                      multivariate=not spec.multi_objective, constant_liar=True)


def make_searcher(spec: StudySpec, seed: int, storage: optuna.storages.BaseStorage | None = None,
                  gate: DrawGate | None = None, record: Any = None) -> StudySearch | None:
    """Optuna for the searched knobs; none when every knob is fixed (one trial per seed).
    With a ``storage``, the seed's Optuna study is kept there (harness.store.journal); with a
    ``gate``, draws over ``search.constraints`` never train (``record`` keeps their rows)."""
    if not spec.searched_params():
        return None
    objectives = spec.search.objectives
    metric: str | list[str] = [o.metric for o in objectives]
    mode: str | list[str] = [o.mode for o in objectives]
    if not spec.multi_objective:
        metric, mode = metric[0], mode[0]
    named = {"storage": storage, "study_name": journal.study_name(spec.study, seed)} if storage else {}
    return StudySearch(space=optuna_space(spec), metric=metric, mode=mode,
                       sampler=make_sampler(spec, seed), budget=spec.budget.epochs, gate=gate, record=record,
                       **named)


def asha_rungs(spec: StudySpec) -> list[int]:
    """The epochs at which ASHA may stop a trial (its rung milestones, as Ray sets them).

    When the last rung falls short of the budget (grace 4, factor 2, budget 20:
    4, 8, 16), a trial cut there has spent most of the budget and leaves no
    test figures; a budget of ``grace * factor**k`` avoids that.
    """
    grace, factor, budget = spec.asha.grace_period, spec.asha.reduction_factor, spec.budget.epochs
    count = int(math.log(budget / grace) / math.log(factor) + 1)
    return [round(grace * factor**k) for k in range(count)]


def chance_floor(labels: np.ndarray) -> float:
    """The validation accuracy a trial that learned nothing can reach: always guessing
    the most common class, plus three standard errors of that rate on this many images."""
    rate = np.bincount(labels).max() / len(labels)
    return float(rate + 3 * math.sqrt(rate * (1 - rate) / len(labels)))


class StudyScheduler(ASHAScheduler):
    """ASHA that also stops a trial no better than guessing.

    ASHA stops a trial only against the others' results at its rung, so the
    first trial to reach a rung always goes on: a study's first trials (two at
    once on two CPUs) run their whole budget even when they diverged. From the
    grace period on, a trial whose validation accuracy is at or below
    ``floor`` (``chance_floor`` of the validation labels) is stopped as well.
    """

    def __init__(self, *args: Any, floor: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require_internals(self, ASHAScheduler)
        self.floor = floor
        self.grace_period = kwargs["grace_period"]
        self._arrival: dict[str, int] = {}  # trial id -> order of arrival, for choose_trial_to_run

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        self._arrived(trial)

    def _arrived(self, trial: Any) -> int:
        return self._arrival.setdefault(trial.trial_id, len(self._arrival))

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """FIFO's choice, the first pending trial or else the first paused one, found among
        the live trials: Ray's walks every trial of the study at every step of its loop,
        which grew to 7% of the driver's CPU time at 2,000 trials."""
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if waiting:
                return min(waiting, key=self._arrived)
        return None

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # records the rung result first
        value = result.get(self._metric)
        if (action == TrialScheduler.CONTINUE and self.floor is not None and value is not None
                and result.get(self._time_attr, 0) >= self.grace_period and value <= self.floor):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return action


def chance_guard(spec: StudySpec) -> bool:
    """Whether trials no better than guessing are stopped too (``asha.stop_at_chance`` on ``val_acc``)."""
    return spec.asha.stop_at_chance and spec.search.objectives[0].metric == "val_acc"


def make_scheduler(spec: StudySpec, val_labels: np.ndarray | None = None) -> StudyScheduler:
    """ASHA on the first objective, one rung unit per epoch report; with the
    validation labels, and ``asha.stop_at_chance`` on a first objective of
    ``val_acc``, trials no better than guessing stop too."""
    first = spec.search.objectives[0]
    guard = chance_guard(spec) and val_labels is not None
    return StudyScheduler(
        time_attr=TRAINING_ITERATION, metric=first.metric, mode=first.mode,
        max_t=spec.budget.epochs, grace_period=spec.asha.grace_period,
        reduction_factor=spec.asha.reduction_factor,
        floor=chance_floor(val_labels) if guard else None,
    )
