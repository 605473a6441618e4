"""Build a claim's model (no weights, no downloads) and count its parameters and forward FLOPs.

Three builders: ``torchvision:<builder>`` (``torchvision.models.get_model(name, weights=None,
**args)``), ``computelimits:<name>`` (``models.build_model``), and ``transformers:<ConfigClass>``
(the config class with its defaults updated by ``model_args``, then ``AutoModel.from_config``;
``HF_HUB_OFFLINE=1`` so nothing is fetched). The forward pass is counted twice, as the runner does:
fvcore (2 x multiply-adds, the project's handles) and torch's ``FlopCounterMode``. Counts are
cached per (model, args, input), since built-in sets repeat models.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from harness.audit.claims import Claim, InputSpec
from harness.errors import UserError


class BuildError(UserError):
    pass


class _FirstOutput(nn.Module):
    """A transformers model as a module that returns one tensor (what fvcore's tracer needs)."""

    def __init__(self, model: nn.Module, encoder_decoder: bool):
        super().__init__()
        self.model = model
        self.encoder_decoder = encoder_decoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        extra = {"decoder_input_ids": input_ids} if self.encoder_decoder else {}
        return self.model(input_ids=input_ids, return_dict=False, **extra)[0]


@dataclass
class Built:
    module: nn.Module
    inputs: tuple
    #: Tokens per sample (text) for the 6ND rule, None for images.
    tokens_per_sample: Optional[int]
    is_transformer: bool


@dataclass
class Count:
    params: int
    fwd_flops: float  # fvcore, 2 x MACs, one sample
    fwd_flops_fcm: Optional[float]  # FlopCounterMode, one sample
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    tokens_per_sample: Optional[int] = None
    is_transformer: bool = False
    seconds: float = 0.0


def _torchvision(name: str, args: dict, where: str) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models():
        raise BuildError(f"{where}: torchvision has no builder {name!r} (torchvision.models.list_models() lists "
                         f"{len(torchvision.models.list_models())})")
    try:
        return torchvision.models.get_model(name, weights=None, **args)
    except (TypeError, ValueError) as e:
        raise BuildError(f"{where}: torchvision:{name}({json.dumps(args)}) failed: {e}") from None


def _computelimits(name: str, args: dict, where: str) -> nn.Module:
    from models import MODEL_REGISTRY, build_model

    if name not in MODEL_REGISTRY:
        raise BuildError(f"{where}: no computelimits model {name!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")
    try:
        return build_model(name, **args)
    except (TypeError, ValueError) as e:
        raise BuildError(f"{where}: computelimits:{name}({json.dumps(args)}) failed: {e}") from None


def _transformers(name: str, args: dict, where: str) -> tuple[nn.Module, int, bool]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise BuildError(f"{where}: transformers:{name} needs the transformers package "
                         "(pip install 'computelimits[audit]')") from None
    config_cls = getattr(transformers, name, None)
    if config_cls is None or not isinstance(config_cls, type) or not issubclass(config_cls, transformers.PretrainedConfig):
        raise BuildError(f"{where}: transformers has no config class {name!r} (e.g. BertConfig, GPT2Config, T5Config)")
    try:
        config = config_cls(**args)
        model = transformers.AutoModel.from_config(config)
    except (TypeError, ValueError, AttributeError) as e:
        raise BuildError(f"{where}: transformers:{name}({json.dumps(args)}) failed: {e}") from None
    return model, int(config.vocab_size), bool(getattr(config, "is_encoder_decoder", False))


def build(claim: Claim, batch_size: int = 1) -> Built:
    """The claim's model in eval mode, and a batch of ``batch_size`` samples of its input."""
    where = f"claim {claim.claim_id!r} (line {claim.line}), column 'model'"
    kind, name, spec = claim.model_kind, claim.model_name, claim.input or InputSpec(image=(3, 224, 224))
    if kind == "transformers":
        if spec.seq_len is None:
            spec = InputSpec(seq_len=512)
        model, vocab, enc_dec = _transformers(name, claim.model_args, where)
        ids = torch.randint(0, vocab, (batch_size, spec.seq_len), generator=torch.Generator().manual_seed(0))
        return Built(_FirstOutput(model, enc_dec).eval(), (ids,), spec.seq_len, True)
    if spec.image is None:
        raise BuildError(f"claim {claim.claim_id!r} (line {claim.line}), column 'input': {spec.text} is a text input; "
                         f"{kind} models are counted on images (CxHxW); use transformers:<ConfigClass> for text")
    module = _torchvision(name, claim.model_args, where) if kind == "torchvision" else _computelimits(name, claim.model_args, where)
    x = torch.randn(batch_size, *spec.image, generator=torch.Generator().manual_seed(0))
    return Built(module.eval(), (x,), None, False)


def _key(claim: Claim) -> str:
    return json.dumps([claim.model, claim.model_args, (claim.input or InputSpec(image=(3, 224, 224))).text], sort_keys=True)


class Counter:
    """Counts per distinct (model, args, input), so repeated models are built once."""

    def __init__(self) -> None:
        self.cache: dict[str, Count] = {}

    def count(self, claim: Claim) -> Count:
        key = _key(claim)
        if key not in self.cache:
            self.cache[key] = self._count(claim)
        return self.cache[key]

    @staticmethod
    def _count(claim: Claim) -> Count:
        import time

        from harness.measure.flops import count_forward_flops_torch, count_forward_macs

        start = time.perf_counter()
        built = build(claim)
        params = sum(p.numel() for p in built.module.parameters())
        try:
            fv = count_forward_macs(built.module, built.inputs, num_samples=1, copy_model=False)
        except Exception as e:  # fvcore's tracer fails on some models: say so, do not crash the audit
            raise BuildError(f"claim {claim.claim_id!r} (line {claim.line}): fvcore could not trace {claim.model}: "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        try:
            fcm: Optional[float] = count_forward_flops_torch(built.module, built.inputs, copy_model=False)
        except Exception:  # FlopCounterMode is the cross-check only
            fcm = None
        return Count(params=int(params), fwd_flops=fv.flops_per_sample, fwd_flops_fcm=fcm,
                     unsupported_ops=fv.unsupported_ops, tokens_per_sample=built.tokens_per_sample,
                     is_transformer=built.is_transformer, seconds=time.perf_counter() - start)
