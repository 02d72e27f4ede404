"""One builder of specs for the tests."""
from __future__ import annotations


def small_spec(**changes):
    """A valid spec for fast tests; ``changes`` are dotted overrides."""
    from harness.spec.load import apply_override, parse_spec

    raw = {
        "study": "test", "method": "kd",
        "teacher": {"model": "lenet5_half", "recipe": {"epochs": 2, "batch_size": 64}},
        "student": {"model": "lenet5_half", "width": 0.5},
        "budget": {"epochs": 2},
        "search": {"num_samples": 2, "space": {"lr": {"loguniform": [0.01, 0.05]}}},
    }
    for key, value in changes.items():
        apply_override(raw, f"{key}={value}")
    return parse_spec(raw)


def is_chain_step(path) -> bool:
    """A spec whose student or teacher comes from another study (``from_study``): it reads only
    once its parent has run (tests/test_chains.py runs the shipped chain step by step)."""
    import yaml

    raw = yaml.safe_load(open(path).read()) or {}
    return any(isinstance(raw.get(role), dict) and "from_study" in raw[role] for role in ("student", "teacher"))
