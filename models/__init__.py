"""Model architectures, each with a ``scale`` width knob. No training code lives here.

``build_model(name, scale=..., **arch)`` is the only entry point the harness uses.
"""
from models.registry import MODEL_REGISTRY, build_model, model_config_class, register_model

# Importing the architecture modules registers them.
from models import resnet as _resnet  # noqa: F401,E402

__all__ = ["MODEL_REGISTRY", "build_model", "model_config_class", "register_model"]
