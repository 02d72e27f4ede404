"""A method's training state as plain tensors and numbers, and back.

Trials checkpoint at every report so that a retried or resumed trial goes on
from there. The state holds only what ``torch.load(..., weights_only=True)``
accepts: no pickled modules or functions, so loading a checkpoint never runs
code. It is collected from the method's attributes by type, which is why a
method needs no code of its own to be resumable:

- the student's ``state_dict`` (its shapes too: a pruned student is narrower
  than a freshly built one, and :func:`fit_shapes` narrows it back);
- every ``nn.Module``, optimiser (also in lists) and learning-rate scheduler;
- tensors and plain values (numbers, strings, lists, dicts of those);
- any object with ``state_dict``/``load_state_dict`` of such values (a
  :class:`~methods.training.BatchStream` part-way through a pass);
- the seeded generator, so the data order after a resume is the one the
  trial would have drawn anyway.

Any other attribute is an :class:`UnsavedState` error at the first report,
unless the class names it in ``transient`` (its ``__init__`` rebuilds it, or it
is empty at every report): a silently dropped iterator would make a resumed
trial train on other batches than the one it replaces.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

SKIPPED = ("ctx", "params")  # rebuilt from the trial's spec, never from a file
PLAIN = (type(None), bool, int, float, str)


class Method(Protocol):
    """What this module reads of a :class:`methods.base.Method` (described here rather than
    imported: the base class calls this module, and this module needs no more of it)."""

    ctx: Any  # the MethodContext: its student and its seeded generator

    def prepare_optimizers(self) -> None: ...


class UnsavedState(TypeError):
    """A method attribute that a checkpoint cannot hold and the class does not declare transient."""


def is_plain(value: Any) -> bool:
    if isinstance(value, PLAIN):
        return True
    if type(value) in (list, tuple):  # exact types: a defaultdict's factory would be pickled
        return all(is_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, PLAIN) and is_plain(v) for k, v in value.items())
    return False


def transient_names(cls: type) -> set[str]:
    """``transient`` of the class and of every base class."""
    return {name for klass in cls.__mro__ for name in vars(klass).get("transient", ())}


def is_stateful(value: Any) -> bool:
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))


def method_state(method: Method) -> dict[str, Any]:
    state: dict[str, Any] = {"student": method.ctx.student.state_dict(),
                             "generator": method.ctx.generator.get_state(),
                             "modules": {}, "optimizers": {}, "schedulers": {}, "tensors": {}, "values": {},
                             "stateful": {}}
    transient = transient_names(type(method))
    for name, value in vars(method).items():
        if name in SKIPPED or name in transient or value is method.ctx.student:
            continue
        if isinstance(value, nn.Module):
            state["modules"][name] = value.state_dict()
        elif isinstance(value, Optimizer):
            state["optimizers"][name] = value.state_dict()
        elif isinstance(value, list) and value and all(isinstance(v, Optimizer) for v in value):
            state["optimizers"][name] = [v.state_dict() for v in value]
        elif isinstance(value, LRScheduler):
            state["schedulers"][name] = value.state_dict()
        elif isinstance(value, torch.Tensor):
            state["tensors"][name] = value
        elif is_plain(value):
            state["values"][name] = value
        elif is_stateful(value):
            state["stateful"][name] = value.state_dict()
        else:
            raise UnsavedState(
                f"{type(method).__name__}.{name}: a {type(value).__name__} cannot be saved in a checkpoint, so a "
                f"resumed trial would lose it; hold it as a tensor, module, optimiser, plain value or an object "
                f"with state_dict()/load_state_dict(), or, if __init__ rebuilds it, declare "
                f"transient = (\"{name}\",)")
    return state


def restore_method(method: Method, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`method_state`) into a freshly built ``method``."""
    student = method.ctx.student
    fit_shapes(student, state["student"])
    student.load_state_dict(state["student"])
    method.ctx.generator.set_state(state["generator"])
    for name, value in {**state["values"], **state["tensors"]}.items():
        setattr(method, name, value)
    for name, weights in state["modules"].items():
        getattr(method, name).load_state_dict(weights)
    method.prepare_optimizers()  # lazily built optimisers exist from here on
    for name, saved in state["optimizers"].items():
        live = getattr(method, name)
        for optimizer, weights in zip(live, saved, strict=True) if isinstance(saved, list) else [(live, saved)]:
            optimizer.load_state_dict(weights)
    for name, saved in state["schedulers"].items():
        getattr(method, name).load_state_dict(saved)
    for name, saved in state.get("stateful", {}).items():
        getattr(method, name).load_state_dict(saved)


def fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize ``model``'s layers to the shapes in ``state`` (a pruned copy of it).

    Channel pruning changes only the sizes of convolutions, linear layers and
    normalisation layers, never the network's wiring, so new empty tensors of
    the saved shapes (filled by ``load_state_dict`` next) restore the structure.
    """
    for prefix, module in model.named_modules():
        changed = False
        for kind in ("_parameters", "_buffers"):
            tensors = getattr(module, kind)
            for name, tensor in tensors.items():
                saved = state.get(f"{prefix}.{name}" if prefix else name)
                if tensor is None or saved is None or saved.shape == tensor.shape:
                    continue
                fresh = torch.empty(saved.shape, dtype=tensor.dtype, device=tensor.device)
                tensors[name] = nn.Parameter(fresh, tensor.requires_grad) if kind == "_parameters" else fresh
                changed = True
        if changed:
            _fix_attributes(prefix, module)


def _fix_attributes(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        module.out_channels = module.weight.shape[0]
        if depthwise:
            module.groups = module.in_channels = module.out_channels
        else:
            module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = module.running_mean.shape[0] if module.running_mean is not None \
            else module.weight.shape[0]
    else:
        raise ValueError(f"checkpoint: cannot resize layer '{name}' ({type(module).__name__}) to its saved shape")
