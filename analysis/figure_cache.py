"""Rendered figures, cached by the content of what they draw.

Rendering is most of a warm analysis (matplotlib's layout and PNG/SVG writing: about 70% of the
time on a 2-core CPU), and most figures (the literature's six benchmarks, the k summary, the
Epoch context) do not change between runs. A figure is stored under the SHA-256 of the
function's name, the source of the modules that draw it, matplotlib's version and the pickled
arguments; the same key gives the same bytes, and anything that changes the picture changes the
key. Arguments that cannot be pickled, or pickles that differ between processes (sets of
strings), only cost a re-render: a miss is never wrong.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

from common.atomic import write_atomic

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
#: The modules whose code decides what a figure looks like.
_SOURCES = ("figures.py", "fits.py", "constants.py", "figure_cache.py")


def _code_version() -> str:
    import matplotlib

    h = hashlib.sha256(matplotlib.__version__.encode())
    for name in _SOURCES:
        h.update((_HERE / name).read_bytes())
    return h.hexdigest()


class FigureCache:
    """``render(fn, *args)`` returns ``fn(*args)`` (a ``Figure`` or None), from ``folder`` when it was drawn before."""

    def __init__(self, folder: Optional[str | Path]):
        self.folder = None if folder is None else Path(folder)
        self.version = _code_version() if self.folder is not None else ""
        self.hits = 0
        self.misses = 0

    def _key(self, fn: Callable, args: tuple) -> Optional[str]:
        try:
            blob = pickle.dumps(args, protocol=4)
        except Exception:  # noqa: BLE001 - an unpicklable argument only means no caching
            return None
        h = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__}|{self.version}|".encode())
        h.update(blob)
        return h.hexdigest()[:32]

    def render(self, fn: Callable[..., Any], *args: Any) -> Any:
        from analysis.figures import Figure

        key = None if self.folder is None else self._key(fn, args)
        if key is not None:
            meta_path = self.folder / f"{key}.json"
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                    if meta.get("none"):
                        self.hits += 1
                        return None
                    data = {fmt: (self.folder / f"{key}.{fmt}").read_bytes() for fmt in meta["formats"]}
                    self.hits += 1
                    return Figure(meta["name"], meta["title"], data)
                except (OSError, ValueError, KeyError):
                    pass  # a damaged entry is drawn again and overwritten
        self.misses += 1
        figure = fn(*args)
        if key is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                if figure is not None:
                    for fmt, data in figure.data.items():
                        write_atomic(self.folder / f"{key}.{fmt}", data)
                meta = {"none": True} if figure is None else \
                    {"name": figure.name, "title": figure.title, "formats": list(figure.data)}
                write_atomic(self.folder / f"{key}.json", json.dumps(meta))  # last: marks the entry whole
            except OSError as e:
                log.warning("figure cache %s not written (%s); figures are drawn each time", self.folder, e)
        return figure
