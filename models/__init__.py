"""Model architectures, each with a ``scale`` width knob. No training code lives here.

``build_model(name, scale=..., **arch)`` is the only entry point the harness uses. Every module
of this package is imported here and registers its models, so adding a model is one module
(plus its file in ``conf/harness/model/``).
"""
import importlib as _importlib
import pkgutil as _pkgutil

from models.registry import MODEL_REGISTRY, MODEL_TASKS, build_model, model_config_class, models_for, register_model

for _info in _pkgutil.iter_modules(__path__):
    if _info.name != "registry" and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["MODEL_REGISTRY", "MODEL_TASKS", "build_model", "model_config_class", "models_for", "register_model"]
