"""Within-family scaling: k from forward-pass FLOPs against published top-1 error.

For each family of torchvision architectures (ResNet 18-152, EfficientNet B0-B7, ...) the
forward pass is counted with fvcore on the architecture itself, at the evaluation resolution of
the chosen weights. No weights are downloaded: the architecture is built untrained, and the
accuracy comes from the ``acc@1`` metadata on torchvision's weight enums, which ships with the
package.

Conventions: fvcore counts one multiply-add as one "flop", so ``fvcore_macs`` is MACs and
``fwd_flops`` = 2 x MACs (DESIGN.md). torchvision's own ``_ops`` metadata is also in
multiply-adds (GMACs, though torchvision's docs call the column "GFLOPS"); the table keeps it so
the factor of two is visible.

Counting runs the model once on CPU, which takes seconds for the large members. Counts are cached
in ``<cache_dir>/within_family_fvcore.json`` keyed by model, weights and library versions, and a
cold cache is filled in a worker process while the rest of the analysis runs.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import math
import multiprocessing
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

import pandas as pd

from analysis.errors import AnalysisError
from common.atomic import write_atomic

log = logging.getLogger(__name__)

CACHE_NAME = "within_family_fvcore.json"
WITHIN_COLUMNS = ["family", "model", "weights", "resolution_px", "acc1_pct", "top1_error",
                  "fvcore_macs", "fwd_flops", "torchvision_ops_gmacs", "fvcore_vs_torchvision",
                  "num_params", "unsupported_ops"]


def _versions() -> str:
    parts = []
    for pkg in ("torch", "torchvision", "fvcore"):
        try:
            parts.append(f"{pkg}={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{pkg}=?")
    return ",".join(parts)


def _key(model: str, weights: str, versions: str) -> str:
    return f"{model}|{weights}|{versions}"


@contextlib.contextmanager
def _skip_weight_init() -> Iterator[None]:
    """Make torch.nn.init a no-op while an architecture is built.

    Counting needs shapes, not values; random initialisation of the large members costs more
    than counting them. (The same trick as ``no_init_weights`` in Hugging Face transformers.)
    """
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")
             and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def noop(tensor, *args, **kwargs):
        return tensor

    try:
        for n in names:
            setattr(init, n, noop)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def _pick_weights(model: str, preferred: str):
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    return getattr(enum, preferred, None) or enum.DEFAULT


def count_models(models: list[str], preferred_weights: str) -> dict[str, dict[str, Any]]:
    """Count each architecture's forward pass with fvcore; returns cache records by model name."""
    import warnings

    with warnings.catch_warnings():  # torch.jit deprecation notices on import are not ours
        warnings.simplefilter("ignore", FutureWarning)
        import torch
        from fvcore.nn import FlopCountAnalysis
        from torchvision.models import get_model, list_models

    known = set(list_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"unknown torchvision model(s) {unknown}; valid names come from "
                         "torchvision.models.list_models(), e.g. resnet50, efficientnet_b0")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    # Half the cores: this runs beside the rest of the analysis. Restored afterwards, since the
    # in-process fallback would otherwise change torch's thread count for the whole process.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    try:
        out = {}
        for name in models:
            w = _pick_weights(name, preferred_weights)
            res = int(getattr(w.transforms(), "crop_size", [224])[0])
            with _skip_weight_init(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = get_model(name, weights=None).eval()
                with torch.no_grad():
                    fca = FlopCountAnalysis(net, torch.zeros(1, 3, res, res))
                    fca.unsupported_ops_warnings(False)
                    fca.uncalled_modules_warnings(False)
                    macs = int(fca.total())
                    unsupported = dict(fca.unsupported_ops())
            out[name] = {
                "weights": f"{type(w).__name__}.{w.name}",
                "resolution_px": res,
                "acc1_pct": float(w.meta["_metrics"]["ImageNet-1K"]["acc@1"]),
                "torchvision_ops_gmacs": float(w.meta["_ops"]) if "_ops" in w.meta else math.nan,
                "num_params": int(w.meta.get("num_params", sum(p.numel() for p in net.parameters()))),
                "fvcore_macs": macs,
                "unsupported_ops": unsupported,
            }
        return out
    finally:
        torch.set_num_threads(threads)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a broken cache is rebuilt, not an error


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    """Save the counts; the cache only saves time, so a folder that cannot be written is a
    warning (the counts are used anyway), never a failure after the work is done."""
    try:
        write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
    except OSError as e:
        log.warning("cache_dir: cannot write %s (%s): the fvcore counts are not cached", path,
                    e.strerror or e)


def _quiet_on_sigint() -> None:
    """In the counting worker: Ctrl-C (sent to the whole process group) ends it at once and
    silently; the main process reports the interrupt in one line."""
    import signal

    signal.signal(signal.SIGINT, lambda *_: os._exit(130))


class WithinFamilyCounts:
    """Cached fvcore counts; a cold cache is filled in a worker process started by :meth:`start`."""

    def __init__(self, families: dict[str, list[str]], preferred_weights: str, cache_dir: str):
        self.families = {f: list(ms) for f, ms in families.items()}
        self.preferred = preferred_weights
        self.cache_path = Path(cache_dir) / CACHE_NAME
        self.versions = _versions()
        self.cache = _read_cache(self.cache_path)
        models = [m for ms in self.families.values() for m in ms]
        self.missing = [m for m in dict.fromkeys(models)
                        if _key(m, self.preferred, self.versions) not in self.cache]
        self._pool: Optional[cf.ProcessPoolExecutor] = None
        self._future: Optional[cf.Future] = None

    def start(self) -> None:
        if not self.missing:
            return
        log.info("counting %d torchvision architectures with fvcore (cached in %s)",
                 len(self.missing), self.cache_path)
        try:
            ctx = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                                initializer=_quiet_on_sigint)
            self._future = self._pool.submit(count_models, self.missing, self.preferred)
        except (OSError, RuntimeError):  # no worker processes here: count inline in finish()
            self._pool = self._future = None

    def cancel(self) -> None:
        """Stop the worker (on an error elsewhere)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._future = None

    def finish(self) -> pd.DataFrame:
        """Wait for the counts, update the cache, return one row per model."""
        if self.missing:
            try:
                if self._future is not None:
                    try:
                        counted = self._future.result()
                    finally:
                        self._pool.shutdown()
                else:
                    counted = count_models(self.missing, self.preferred)
            except ValueError as e:
                raise AnalysisError(f"within_family.families: {e}") from None
            for m, rec in counted.items():
                self.cache[_key(m, self.preferred, self.versions)] = rec
            _write_cache(self.cache_path, self.cache)
            self.missing = []
        rows = []
        for family, models in self.families.items():
            for m in models:
                rec = self.cache[_key(m, self.preferred, self.versions)]
                macs = float(rec["fvcore_macs"])
                tv = float(rec["torchvision_ops_gmacs"]) * 1e9
                rows.append({
                    "family": family, "model": m, "weights": rec["weights"],
                    "resolution_px": rec["resolution_px"], "acc1_pct": rec["acc1_pct"],
                    "top1_error": 1.0 - rec["acc1_pct"] / 100.0,
                    "fvcore_macs": macs, "fwd_flops": 2.0 * macs,
                    "torchvision_ops_gmacs": rec["torchvision_ops_gmacs"],
                    "fvcore_vs_torchvision": macs / tv if tv > 0 else math.nan,
                    "num_params": rec["num_params"],
                    "unsupported_ops": ";".join(f"{k}:{v}" for k, v in
                                                sorted(rec["unsupported_ops"].items())),
                })
        return pd.DataFrame(rows, columns=WITHIN_COLUMNS)
