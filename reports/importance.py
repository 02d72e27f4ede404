"""Hyperparameter importance with Optuna's evaluators, from a results table alone."""
from __future__ import annotations

import warnings
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

optuna.logging.set_verbosity(optuna.logging.ERROR)


def distributions(space: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The searched knobs of a spec's ``search.space`` as written to study.json."""
    out: dict[str, BaseDistribution] = {}
    for name, entry in space.items():
        if not isinstance(entry, dict) or "kind" not in entry:
            continue  # a fixed value
        kind, args = entry["kind"], entry["args"]
        if kind == "categorical":
            out[name] = CategoricalDistribution(args)
        elif kind == "int":
            out[name] = IntDistribution(int(args[0]), int(args[1]))
        else:
            out[name] = FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")
    return out


def param_importances(trials: pd.DataFrame, space: dict[str, Any], metric: str = "val_acc",
                      mode: str = "max") -> tuple[dict[str, float] | None, str]:
    """Importance of each searched knob for ``metric`` over completed trials, and a note.

    Returns ``(None, reason)`` when it cannot be computed (too few trials, nothing searched).
    """
    dists = distributions(space)
    done = trials[trials["status"].eq("completed") & trials[metric].notna()]
    if not dists:
        return None, "nothing was searched"
    if len(done) < 4:
        return None, f"{len(done)} completed trial(s); importance needs at least 4"
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for row in done.to_dict("records"):
        try:
            params = {name: _cast(row.get(f"param_{name}"), dist) for name, dist in dists.items()}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row[metric])))
        except (ValueError, TypeError):
            continue  # a value outside the recorded space (an edited spec): leave the trial out
    if len(study.trials) < 4:
        return None, "too few trials inside the searched space"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), normalize=True)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return None, f"not computable ({exc})"
    return dict(result), f"PED-ANOVA over {len(study.trials)} completed trials"


def _cast(value: Any, dist: BaseDistribution) -> Any:
    if isinstance(dist, IntDistribution):
        return int(value)
    if isinstance(dist, FloatDistribution):
        return float(value)
    for choice in dist.choices:  # Parquet may hand back numpy scalars or strings
        if choice == value or str(choice) == str(value):
            return choice
    raise ValueError(f"{value!r} is not one of {dist.choices}")
