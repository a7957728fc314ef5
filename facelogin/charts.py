"""Charts for the admin, drawn on the server with matplotlib (no pyplot, no display) and sent as SVG.

Plain: every function takes numbers and already-translated text and returns a ``Figure``; nothing here
reads Django. ``svg`` renders one. Each chart also means something without colour: series differ by
hatching, line style and marker as well, and are named in a legend or on the bars themselves. The same
numbers are in a table beside every chart (the admin's templates), for screen readers and for copying.

SVG text stays text (``svg.fonttype: none``): small files, sharp at any zoom, and Korean labels are
drawn with the browser's fonts. Renders are deterministic (fixed ids, no date), so the same numbers
give the same bytes.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: never a GUI backend in a server

from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

# Colour-blind-safe (Okabe-Ito), each paired with a hatch and a line style of its own.
BLUE, ORANGE, GREEN, GREY, INK = "#0072B2", "#E69F00", "#009E73", "#6b7280", "#1d2430"
SERIES = ((BLUE, "", "-", "o"), (ORANGE, "//", "--", "s"), (GREEN, "..", ":", "^"))

STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "facelogin-charts",
    "font.family": ["DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP", "sans-serif"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "text.color": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "hatch.linewidth": 1.0,
}
WIDTH, HEIGHT = 7.2, 3.4  # inches at 100 dpi: 720 x 340 px


def _figure(height: float = HEIGHT) -> Figure:
    with rc_context(STYLE):
        figure = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
        figure.add_subplot()
    return figure


def svg(figure: Figure) -> bytes:
    """The figure as SVG bytes."""
    buffer = io.BytesIO()
    with rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing CJK font only means a fallback glyph
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def _integer_axis(axis) -> None:
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _day_ticks(axes, labels: Sequence[str]) -> None:
    step = max(1, math.ceil(len(labels) / 12))  # at most about 12 dates under a chart
    positions = list(range(0, len(labels), step))
    axes.set_xticks(positions, [labels[i] for i in positions], rotation=45, ha="right", rotation_mode="anchor")
    axes.set_xlim(-0.6, len(labels) - 0.4)
    axes.grid(axis="x", visible=False)


def stacked_bars_by_day(
    day_labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], *, title: str, ylabel: str
) -> Figure:
    """One bar a day, the series stacked (e.g. sign-ins by method)."""
    with rc_context(STYLE):
        figure = _figure()
        axes = figure.axes[0]
        positions = range(len(day_labels))
        bottom = [0] * len(day_labels)
        for (label, values), (colour, hatch, _line, _marker) in zip(series, SERIES):
            axes.bar(positions, values, bottom=bottom, label=label, color=colour, hatch=hatch, edgecolor="white", linewidth=0.6, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values)]
        axes.set_title(title, loc="left")
        axes.set_ylabel(ylabel)
        _integer_axis(axes.yaxis)
        axes.set_ylim(0, max(max(bottom, default=0), 1) * 1.1)
        _day_ticks(axes, day_labels)
        axes.legend(loc="upper left", ncols=len(series))
    return figure


def rate_by_day(
    day_labels: Sequence[str], rates: Sequence[float | None], *, title: str, ylabel: str, overall: float | None, overall_label: str
) -> Figure:
    """A share per day (0 to 1, shown as %), with gaps on days without data, and the overall share."""
    with rc_context(STYLE):
        figure = _figure()
        axes = figure.axes[0]
        values = [math.nan if r is None else 100 * r for r in rates]
        axes.plot(range(len(day_labels)), values, color=BLUE, linestyle="-", marker="o", markersize=4, label=ylabel)
        if overall is not None:
            axes.axhline(100 * overall, color=INK, linestyle="--", linewidth=1.2, label=overall_label)
        axes.set_title(title, loc="left")
        axes.set_ylabel(ylabel)
        axes.set_ylim(0, 105)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f} %"))
        _day_ticks(axes, day_labels)
        axes.legend(loc="lower left", ncols=2)
    return figure


def horizontal_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    value_labels: Sequence[str] | None = None,
    reference: tuple[float, str] | None = None,
    xlim: tuple[float, float] | None = None,
    percent_axis: bool = False,
) -> Figure:
    """One bar a category, top to bottom in the order given, each with its value written at its end."""
    height = max(1.8, 0.9 + 0.32 * len(labels))
    with rc_context(STYLE):
        figure = _figure(height)
        axes = figure.axes[0]
        positions = list(range(len(labels)))[::-1]
        bars = axes.barh(positions, values, color=BLUE, height=0.65)
        axes.bar_label(bars, labels=list(value_labels) if value_labels is not None else [f"{v:,}" for v in values], padding=3)
        axes.set_yticks(positions, labels)
        axes.grid(axis="y", visible=False)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        top = max([*values, 0]) or 1
        axes.set_xlim(*(xlim or (0, top * 1.18)))
        if percent_axis:
            axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
            axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:.0f} %"))
        elif xlim is None:
            _integer_axis(axes.xaxis)
        if reference is not None:
            axes.axvline(reference[0], color=INK, linestyle="--", linewidth=1.2, label=reference[1])
            figure.legend(loc="outside lower right")
    return figure


def count_bars(
    labels: Sequence[str],
    counts: Sequence[int],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    reference: tuple[float, str] | None = None,
) -> Figure:
    """Vertical bars over ordered bins (a histogram of counts), each with its count written on top."""
    with rc_context(STYLE):
        figure = _figure()
        axes = figure.axes[0]
        positions = range(len(labels))
        bars = axes.bar(positions, counts, color=BLUE, width=0.75)
        axes.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=2)
        axes.set_xticks(list(positions), labels)
        axes.grid(axis="x", visible=False)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_ylim(0, max([*counts, 1]) * 1.18)
        _integer_axis(axes.yaxis)
        if reference is not None:
            axes.axvline(reference[0], color=INK, linestyle="--", linewidth=1.2, label=reference[1])
            axes.legend(loc="upper right")
    return figure


def score_distributions(
    edges: Sequence[float],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    thresholds: Sequence[tuple[float, str]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """Score histograms (each scaled to its own total, so a few hundred genuine scores show beside
    thousands of impostor ones) over shared bins, with threshold lines."""
    with rc_context(STYLE):
        figure = _figure(3.8)
        axes = figure.axes[0]
        used = [i for i in range(len(edges) - 1) if any(counts[i] for _label, counts in series)]
        low = edges[max(min(used, default=0) - 1, 0)]
        high = edges[min(max(used, default=len(edges) - 2) + 2, len(edges) - 1)]
        for (label, counts), (colour, hatch, line, _marker) in zip(series, SERIES):
            total = sum(counts) or 1
            shares = [100 * c / total for c in counts]
            axes.stairs(shares, edges, fill=True, color=colour, alpha=0.25, hatch=hatch, linewidth=0)
            axes.stairs(shares, edges, color=colour, linestyle=line, linewidth=1.8, label=f"{label} (n = {sum(counts):,})")
        for (value, label), style in zip(thresholds, ("-", ":")):
            axes.axvline(value, color=INK, linestyle=style, linewidth=1.6, label=label)
        axes.set_xlim(low, high)
        axes.set_ylim(0, axes.get_ylim()[1] * 1.08)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f} %"))
        axes.legend(loc="upper left")
    return figure


def score_ranges(
    rows: Sequence[tuple[str, dict[str, float | None]]],
    *,
    thresholds: Sequence[tuple[float, str]],
    title: str,
    xlabel: str,
    range_label: str,
    middle_label: str,
    median_label: str,
) -> Figure:
    """For versions without histograms: per distribution its min-max (thin), 1st-99th percentile
    (thick) and median (marker), from the stored summaries, with threshold lines."""
    with rc_context(STYLE):
        figure = _figure(2.4)
        axes = figure.axes[0]
        for index, (label, s) in enumerate(rows):
            y = len(rows) - 1 - index
            if s.get("min") is not None and s.get("max") is not None:
                axes.hlines(y, s["min"], s["max"], color=GREY, linewidth=1.5, label=range_label if index == 0 else None)
            if s.get("p01") is not None and s.get("p99") is not None:
                axes.hlines(y, s["p01"], s["p99"], color=SERIES[index][0], linewidth=9, label=middle_label if index == 0 else None)
            if s.get("p50") is not None:
                axes.plot([s["p50"]], [y], marker="D", color=INK, markersize=7, linestyle="none", label=median_label if index == 0 else None)
        for (value, label), style in zip(thresholds, ("--", ":")):
            axes.axvline(value, color=INK, linestyle=style, linewidth=1.4, label=label)
        axes.set_yticks(range(len(rows)), [label for label, _s in rows][::-1])
        axes.set_ylim(-0.7, len(rows) - 0.3)
        axes.grid(axis="y", visible=False)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return figure


def fpir_curve(
    sizes: Sequence[int],
    fpir: Sequence[float],
    *,
    target: float,
    gallery_size: int,
    measured: float | None,
    title: str,
    xlabel: str,
    ylabel: str,
    curve_label: str,
    target_label: str,
    gallery_label: str,
    measured_label: str,
) -> Figure:
    """The chance that a stranger matches someone against the gallery size, log-log, with the target,
    the version's gallery size and what the enrolled photos showed against each other."""
    floor = min([target / 1000, *[f for f in fpir if f > 0]]) / 2
    with rc_context(STYLE):
        figure = _figure(3.6)
        axes = figure.axes[0]
        axes.plot(sizes, [max(f, floor) for f in fpir], color=BLUE, linestyle="-", marker="o", markersize=4, label=curve_label)
        axes.axhline(target, color=INK, linestyle="--", linewidth=1.3, label=target_label)
        axes.axvline(gallery_size, color=GREY, linestyle=":", linewidth=1.5, label=gallery_label)
        if measured is not None and measured > 0:
            axes.plot([gallery_size], [measured], marker="s", color=ORANGE, markersize=8, linestyle="none", label=measured_label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_ylim(floor, 1.5)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:.3g} %"))
        axes.legend(loc="upper left", fontsize=8)
    return figure
