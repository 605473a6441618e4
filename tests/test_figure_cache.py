"""The analysis's figure cache: a hit returns the same bytes without drawing; any change of input is a miss."""
from __future__ import annotations

import threading

import pandas as pd

from analysis.figure_cache import FigureCache
from analysis.figures import Figure

CALLS: list[tuple] = []


def draw(name: str, table: pd.DataFrame, scale: float):
    CALLS.append((name, scale))
    if name == "empty":
        return None
    return Figure(name, f"title {name}", {"png": f"{name}:{table['x'].sum() * scale}".encode(), "svg": b"<svg/>"})


def test_hit_returns_the_same_figure_without_drawing(tmp_path):
    CALLS.clear()
    table = pd.DataFrame({"x": [1.0, 2.0]})
    first = FigureCache(tmp_path).render(draw, "a", table, 2.0)
    again = FigureCache(tmp_path).render(draw, "a", table.copy(), 2.0)  # a new process: a new cache object
    assert CALLS == [("a", 2.0)]
    assert (again.name, again.title, again.data) == (first.name, first.title, first.data) == \
        ("a", "title a", {"png": b"a:6.0", "svg": b"<svg/>"})


def test_any_change_of_input_is_a_miss(tmp_path):
    CALLS.clear()
    cache = FigureCache(tmp_path)
    cache.render(draw, "a", pd.DataFrame({"x": [1.0, 2.0]}), 2.0)
    changed = cache.render(draw, "a", pd.DataFrame({"x": [1.0, 2.5]}), 2.0)
    cache.render(draw, "a", pd.DataFrame({"x": [1.0, 2.0]}), 3.0)
    assert len(CALLS) == 3 and changed.data["png"] == b"a:7.0"
    assert (cache.hits, cache.misses) == (0, 3)


def test_none_is_cached_and_unpicklable_or_damaged_entries_are_drawn(tmp_path):
    CALLS.clear()
    cache = FigureCache(tmp_path)
    assert cache.render(draw, "empty", pd.DataFrame({"x": [1.0]}), 1.0) is None
    assert cache.render(draw, "empty", pd.DataFrame({"x": [1.0]}), 1.0) is None
    assert len(CALLS) == 1
    lock = threading.Lock()  # cannot be pickled: never cached, always drawn

    def draw_with_lock(name, _lock):
        CALLS.append((name, 0))
        return Figure(name, name, {"png": b"x"})

    cache.render(draw_with_lock, "l", lock)
    cache.render(draw_with_lock, "l", lock)
    assert len(CALLS) == 3
    cache.render(draw, "b", pd.DataFrame({"x": [1.0]}), 1.0)
    for png in tmp_path.glob("*.png"):
        png.unlink()  # a damaged entry
    assert cache.render(draw, "b", pd.DataFrame({"x": [1.0]}), 1.0).data["png"] == b"b:1.0"
    assert len(CALLS) == 5


def test_no_folder_means_no_cache(tmp_path):
    CALLS.clear()
    cache = FigureCache(None)
    cache.render(draw, "a", pd.DataFrame({"x": [1.0]}), 1.0)
    cache.render(draw, "a", pd.DataFrame({"x": [1.0]}), 1.0)
    assert len(CALLS) == 2


def test_an_axis_under_a_decade_labels_its_minor_ticks():
    """A compute axis from 2.5e12 to 5.2e12 holds no power of ten: without minor labels it had none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.figures import _log_x, _minor_label

    assert _minor_label(3e12, 0.3) == "3×10¹²" and _minor_label(7e12, 0.3) == "7×10¹²"
    assert _minor_label(5e13, 0.7) == "5×10¹³" and _minor_label(7e13, 0.7) == ""  # 2, 3, 5 only above 0.4
    assert _minor_label(3e12, 1.5) == "" and _minor_label(1e12, 0.3) == ""  # wide axes: majors say it
    fig, ax = plt.subplots()
    try:
        ax.plot([2.5e12, 5.2e12], [0.2, 0.1])
        _log_x(ax)
        fig.canvas.draw()
        lo, hi = ax.get_xlim()
        shown = [(loc, t.get_text()) for loc, t in zip(ax.xaxis.get_minorticklocs(), ax.xaxis.get_ticklabels(minor=True))
                 if lo <= loc <= hi]
        assert [text for _, text in shown] == ["3×10¹²", "4×10¹²", "5×10¹²"]
    finally:
        plt.close(fig)


def test_a_measured_figure_names_the_error_its_runs_report():
    """The measured QA runs report 1 - F1; the SQuAD literature's label is 1 - exact match."""
    import pandas as pd

    from analysis.constants import BENCHMARK_SPECS
    from analysis.figures import _measured_error_label

    class G:
        runs = pd.DataFrame({"metric_name": ["f1", "f1"]})

    assert BENCHMARK_SPECS["squad1.1"].metric_label == "Error (1 - exact match)"
    assert _measured_error_label(G(), BENCHMARK_SPECS["squad1.1"]) == "Error (1 - f1)"
    G.runs = pd.DataFrame({"metric_name": ["top1_accuracy", "box_ap"]})  # mixed: the benchmark's label
    assert _measured_error_label(G(), BENCHMARK_SPECS["squad1.1"]) == "Error (1 - exact match)"
