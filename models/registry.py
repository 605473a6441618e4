"""Model registry keyed by config name.

Adding a model means one module that calls :func:`register_model` and one file in
``conf/harness/model/``. The runner never branches on a model's name. Each model names the
task it is built for (the harness's workload name: ``image_classification``, ``ner``, ...), so
pairing a model with the wrong kind of data fails before anything runs.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from torch import nn

#: name -> (builder(scale, **arch) -> nn.Module, architecture dataclass)
MODEL_REGISTRY: dict[str, tuple[Callable[..., nn.Module], type]] = {}
#: name -> the task (workload name) the model is built for
MODEL_TASKS: dict[str, str] = {}


def register_model(name: str, config_cls: type, task: str) -> Callable:
    """Register ``builder`` under ``name`` for ``task``; ``config_cls`` is a dataclass of its arch knobs.

    The dataclass must have a ``name: str`` field; its other fields are the keyword
    arguments of the builder. Hydra uses it as the typed schema of ``conf/harness/model/<name>.yaml``.
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config_cls for model {name!r} must be a dataclass")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODEL_REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        MODEL_REGISTRY[name] = (builder, config_cls)
        MODEL_TASKS[name] = task
        return builder

    return wrap


def _known() -> str:
    return ", ".join(sorted(MODEL_REGISTRY))


def models_for(task: str) -> list[str]:
    """The registered models built for ``task``."""
    return sorted(n for n, t in MODEL_TASKS.items() if t == task)


def model_config_class(name: str) -> type:
    """The architecture dataclass registered for ``name``."""
    if name not in MODEL_REGISTRY:
        raise KeyError(f"model={name!r} is unknown; known models: {_known()}")
    return MODEL_REGISTRY[name][1]


def build_model(name: str, scale: float = 1.0, **arch: Any) -> nn.Module:
    """Build the registered model ``name`` at width multiplier ``scale``.

    Raises:
        KeyError: unknown name (the message lists the known names).
        ValueError: ``scale`` <= 0 or an architecture knob the model does not have.
    """
    if name not in MODEL_REGISTRY:
        raise KeyError(f"model={name!r} is unknown; known models: {_known()}")
    if not scale > 0:
        raise ValueError(f"scale={scale!r} is invalid: it must be a number > 0")
    builder, config_cls = MODEL_REGISTRY[name]
    fields = set(inspect.signature(builder).parameters) - {"scale"}
    unknown = sorted(set(arch) - fields)
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {unknown[0]!r}; its options: {', '.join(sorted(fields))}"
        )
    return builder(scale=scale, **arch)
