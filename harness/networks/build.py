"""Every network a spec can name: the zoo's, torchvision's, and a user's own factory.

``model`` in a spec is one of
- a zoo name (``lenet5``, ``resnet20``; ``harness list`` shows them), split by the zoo
  as ``classifier(features(x))``;
- ``torchvision:NAME``, any torchvision classification builder, untrained, with its
  classifier sized to the data set's classes;
- ``package.module:function``, a user's factory, called as
  ``function(num_classes=..., input_shape=(C, H, W), **kwargs)``, returning an ``nn.Module``.

Outside the zoo a network is split only where the spec says (``features: NODE``, a
node name of torchvision's feature-extraction utilities): the network up to that node
is ``features``, the rest ``classifier``, both traced with torch.fx and sharing the
network's own layers. Grayscale data feeding a network whose first convolution takes
three channels has its channel repeated inside the network, on the device.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import fx, nn

from harness.errors import SpecError
from harness.networks.zoo import MODELS, create_model
from methods.checkpoint import fit_shapes
from methods.knobs import show
from methods.registry import did_you_mean, import_function

TORCHVISION = "torchvision:"


def is_zoo(name: str) -> bool:
    return ":" not in name


def factory(name: str, field: str) -> Callable[..., nn.Module]:
    """The builder ``name`` stands for, or one error line naming ``field``."""
    if is_zoo(name):
        return MODELS.get(name, field=field)
    if name.startswith(TORCHVISION):
        import torchvision

        builder = name.removeprefix(TORCHVISION)
        known = torchvision.models.list_models(module=torchvision.models)  # classification models only
        if builder not in known:
            raise SpecError(f"{field}: torchvision has no classification model '{builder}'"
                            f"{did_you_mean(builder, known)}")
        return lambda num_classes, input_shape, **kwargs: torchvision.models.get_model(
            builder, weights=None, num_classes=num_classes, **kwargs)
    return import_function(name, field, SpecError)


def build_network(model: Any, num_classes: int, input_shape: tuple[int, int, int], field: str) -> nn.Module:
    """The network a ModelSpec (``model``, ``width``, ``kwargs``, ``features``) describes."""
    if is_zoo(model.model):
        return create_model(model.model, num_classes, model.width, input_shape)
    build = factory(model.model, f"{field}.model")
    try:
        network = build(num_classes=num_classes, input_shape=tuple(input_shape), **model.kwargs)
    except Exception as exc:
        raise SpecError(f"{field}: {model.model}(num_classes={num_classes}, input_shape={tuple(input_shape)}, "
                        f"**{show(model.kwargs)}) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(network, nn.Module):
        raise SpecError(f"{field}: {model.model} returned {type(network).__name__}, not a torch.nn.Module")
    return ExternalNetwork(network, input_shape[0], model.features, field)


def first_conv_channels(network: nn.Module) -> int | None:
    conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


class RepeatChannels(nn.Module):
    """Grayscale to the three channels a network was built for (as torchvision users do)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


class ExternalNetwork(nn.Module):
    """A network from outside the zoo: its own layers under ``net``, split at ``features``
    when the spec names a node. A state_dict saved from the bare network loads too."""

    def __init__(self, net: nn.Module, data_channels: int, features: str | None, field: str) -> None:
        super().__init__()
        expects = first_conv_channels(net)
        self.repeat = RepeatChannels(expects) if data_channels == 1 and expects == 3 else None
        self.net = net
        self.split = features
        self._parts = split_at(net, features, field) if features else None
        self._register_load_state_dict_pre_hook(_accept_bare_keys, with_module=True)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self.repeat(x) if self.repeat is not None else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self._parts is None:
            raise AttributeError("this network has no features split (features: NODE in the spec)")
        return self._parts[0](self._input(x))

    def classifier(self, f: torch.Tensor) -> torch.Tensor:
        if self._parts is None:
            raise AttributeError("this network has no features split (features: NODE in the spec)")
        return self._parts[1](f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._input(x))

    def __deepcopy__(self, memo: dict) -> "ExternalNetwork":
        """A copy whose split parts run the copy's layers, not the original's."""
        clone = ExternalNetwork.__new__(ExternalNetwork)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo) if key != "_parts" else None
        clone._parts = split_at(clone.net, self.split, "") if self.split else None
        return clone


def _accept_bare_keys(module: ExternalNetwork, state: dict, prefix: str, *args: Any) -> None:
    """Keys of the bare network (``conv1.weight``) read as ``net.conv1.weight``."""
    own = {f"{prefix}net.{key}" for key in module.net.state_dict()}
    for key in list(state):
        if key.startswith(prefix) and f"{prefix}net.{key[len(prefix):]}" in own:
            state[f"{prefix}net.{key[len(prefix):]}"] = state.pop(key)


def node_names(net: nn.Module) -> list[str]:
    from torchvision.models.feature_extraction import get_graph_node_names

    return get_graph_node_names(net)[1]


def split_at(net: nn.Module, node: str, field: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``net`` as (up to ``node``, the rest), two graphs sharing ``net``'s layers."""
    from torchvision.models.feature_extraction import create_feature_extractor

    try:
        names = node_names(net)
    except Exception as exc:
        raise SpecError(f"{field}.features: torch.fx cannot trace this network ({type(exc).__name__}: {exc})") \
            from None
    if node not in names:
        raise SpecError(f"{field}.features: the network has no node '{node}'{did_you_mean(node, names)}")
    if node == names[-1]:
        raise SpecError(f"{field}.features: '{node}' is the network's output; name a node before the classifier")
    features = create_feature_extractor(net, {node: "features"})
    _set_output(features, _output(features.graph).args[0]["features"])
    rest = create_feature_extractor(net, {node: "features", names[-1]: "logits"})
    _cut_before(rest, field, node)
    return features, rest


def _output(graph: fx.Graph) -> fx.Node:
    return next(n for n in graph.nodes if n.op == "output")


def _set_output(module: fx.GraphModule, value: fx.Node) -> None:
    _output(module.graph).args = (value,)
    module.graph.eliminate_dead_code()
    module.recompile()


def _cut_before(module: fx.GraphModule, field: str, node: str) -> None:
    """Make ``module`` run from the features to the logits: the features become its input."""
    graph = module.graph
    outputs = _output(graph).args[0]
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    with graph.inserting_before(inputs[0]):
        features = graph.placeholder("features")
    outputs["features"].replace_all_uses_with(features)
    _set_output(module, outputs["logits"])
    if any(n.users for n in inputs):
        raise SpecError(f"{field}.features: the layers after '{node}' also read earlier values (a skip "
                        f"connection crosses it); name a node that every path goes through")
    for n in inputs:
        graph.erase_node(n)
    module.graph.lint()
    module.delete_all_unused_submodules()
    module.recompile()


def check_network(network: nn.Module, input_shape: tuple[int, int, int], field: str) -> None:
    """One error line if the network cannot take the data's images."""
    network.eval()
    x = torch.zeros(2, *input_shape)
    try:
        with torch.no_grad():
            out = network(x)
    except Exception as exc:
        raise SpecError(f"{field}: the network does not take this data's images of shape {tuple(input_shape)} "
                        f"(channels, height, width): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise SpecError(f"{field}: the network's output is not a (batch, classes) tensor of logits")


def check_networks(spec: Any, num_classes: int, input_shape: tuple[int, int, int]) -> list[str]:
    """Build the study's networks once on the data's shape: one error line if one does not
    fit; what was adapted, as notes for the study line."""
    notes = []
    for role in ("student", "teacher"):
        model = getattr(spec, role)
        if model is None or is_zoo(model.model):
            continue
        network = build_network(model, num_classes, input_shape, role)
        check_network(network, input_shape, role)
        if network.repeat is not None:
            notes.append(f"{role} {model.model} takes 3 channels: the data's one channel is repeated on the device")
    return notes


def trained_network(model: Any, num_classes: int, input_shape: tuple[int, int, int], role: str,
                    state: dict[str, torch.Tensor]) -> nn.Module:
    """The network of ``model`` with trained weights ``state``, at the shapes they have (a pruned
    network is narrower than a fresh one); in eval mode."""
    network = build_network(model, num_classes, input_shape, role)
    fit_shapes(network, state)
    network.load_state_dict(state)
    return network.eval()
