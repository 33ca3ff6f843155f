"""The analysis report's figures, drawn with matplotlib from the analysis dict (analysis.json).

Shape shorthand: K object classes; the confusion matrix is (K + 1) x (K + 1), its last row and column
the background. Figures are drawn with matplotlib's object API (``Figure``, saved through Agg), which
leaves pyplot and the caller's backend alone; matplotlib is imported inside the functions, so that
importing this module does not import it until a figure is drawn (training imports it for the
confusion matrix it logs to TensorBoard).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from frcnn.evaluation.tide import MAIN_ERRORS, SPECIAL_ERRORS
from frcnn.utils.visualize import ERROR_STYLE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


# One colour per TIDE error type, the worst images' drawing's own (its "missed" is TIDE's "miss"), so
# that a type has one colour on the whole page; the two special errors have theirs.
ERROR_COLORS = {name: hex_color(ERROR_STYLE["missed" if name == "miss" else name][0]) for name in MAIN_ERRORS}
ERROR_COLORS |= {"fp": "#0072B2", "fn": "#882255"}
ERROR_NAMES = {
    "cls": "classification",
    "loc": "localisation",
    "both": "cls and loc",
    "dupe": "duplicate",
    "bkg": "background",
    "miss": "missed",
    "fp": "false positives",
    "fn": "false negatives",
}
SIZES = ("small", "medium", "large")
SIZE_COLORS = ("#9ECAE1", "#4292C6", "#08519C")

DPI = 100
ANNOTATE_MAX = 30  # the confusion matrix writes its counts up to this many rows
LEGEND_MAX = 20  # PR and F1 figures name each class up to this many classes
PR_GRID_COLUMNS = 8  # beyond LEGEND_MAX classes, one small PR panel per class in rows of this many
LABEL_CHARS = 24  # class names are cut to this many characters in the figures (the tables keep them whole)


def save_figures(analysis: dict, folder: Path) -> None:
    """The report's figures as PNG files in ``folder``: confusion_matrix.png, tide.png,
    f1_confidence.png, pr_curves.png and ap_by_size.png."""
    Image.fromarray(confusion_matrix_image(analysis["confusion_matrix"])).save(folder / "confusion_matrix.png")
    for name, draw in (
        ("tide.png", _tide_figure),
        ("f1_confidence.png", _f1_figure),
        ("pr_curves.png", _pr_figure),
        ("ap_by_size.png", _ap_by_size_figure),
    ):
        draw(analysis).savefig(folder / name, format="png", dpi=DPI)


def confusion_matrix_image(confusion: dict) -> np.ndarray:
    """The row-normalised confusion matrix heatmap (report's ``confusion_matrix.png``) as RGB uint8
    [H, W, 3], for TensorBoard's ``add_image(..., dataformats="HWC")``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _confusion_figure(confusion)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _short(name: str, chars: int = LABEL_CHARS) -> str:
    """The name cut in the middle to at most chars characters: the ends tell names apart (``..._17``)."""
    if len(name) <= chars:
        return name
    tail = (chars - 1) // 2
    return name[: chars - 1 - tail] + "…" + name[len(name) - tail :]


def _class_colors(count: int) -> list:
    """One colour per class (the same in the PR and F1 figures): tab10 up to 10 classes, tab20 up to 20."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def _confusion_figure(confusion: dict) -> Figure:
    """Rows: ground-truth class, the last row the detections that matched no object; columns: predicted
    class, the last column the objects that no detection found. Colour: the fraction of the row; text:
    the count, written in the nonzero cells up to ANNOTATE_MAX rows."""
    names = [_short(name, 18) for name in confusion["classes"]]
    n = len(names)
    normalized = np.asarray(confusion["normalized"], dtype=float).reshape(n, n)
    counts = np.asarray(confusion["counts"], dtype=np.int64).reshape(n, n)
    side = min(3.5 + 0.26 * n, 24.0)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    font = 9.0 if n <= 20 else 7.0  # a cell is at least 0.26 inch (19 points) high
    ax.set_xticks(np.arange(n), names, rotation=90, fontsize=font)
    ax.set_yticks(np.arange(n), names, fontsize=font)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    fig.colorbar(image, ax=ax, shrink=0.7, label="fraction of the row")
    if n <= ANNOTATE_MAX:
        for row, col in zip(*np.nonzero(counts)):
            color = "white" if normalized[row, col] > 0.55 else "black"
            ax.text(col, row, str(counts[row, col]), ha="center", va="center", fontsize=font, color=color)
    return fig


def _tide_figure(analysis: dict) -> Figure:
    """TIDE's dAP per error type (AP points gained by fixing every error of that type): left the six
    main errors, right all false positives and all false negatives; solid bars at IoU 0.5, pale bars
    averaged over IoU 0.5:0.95 (when the analysis has that mean)."""
    from matplotlib.patches import Patch

    fig = _figure(10.0, 3.6)
    main, special = fig.subplots(1, 2, width_ratios=[3, 2])
    _error_bars(main, MAIN_ERRORS, analysis)
    _error_bars(special, SPECIAL_ERRORS, analysis)
    main.set_title("main errors", fontsize=10)
    special.set_title("special errors", fontsize=10)
    if analysis["tide_coco"] is not None:
        handles = [
            Patch(facecolor=fill, edgecolor="0.25", lw=0.6, label=label)
            for fill, label in (("#595959", "IoU 0.5"), (_pale("#595959"), "IoU 0.5:0.95"))
        ]
        fig.legend(handles=handles, loc="outside upper right", ncols=2, fontsize=8, frameon=False)
    return fig


def _pale(color: str) -> str:
    """The colour mixed 45:55 with white (not alpha, which would pale the bar's outline too)."""
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return hex_color(tuple(np.round(0.45 * rgb + 0.55 * 255).astype(int)))


def _error_bars(ax: Axes, names: tuple[str, ...], analysis: dict) -> None:
    y = np.arange(len(names))
    colors = [ERROR_COLORS[name] for name in names]
    bars = [("tide", colors)]
    if analysis["tide_coco"] is not None:
        bars.append(("tide_coco", [_pale(color) for color in colors]))
    height = 0.8 / len(bars)
    for i, (key, fill) in enumerate(bars):
        values = [100.0 * analysis[key][name] for name in names]
        offset = (i - (len(bars) - 1) / 2) * height
        drawn = ax.barh(y + offset, values, height, color=fill, edgecolor="0.25", lw=0.6)
        ax.bar_label(drawn, fmt="%.1f", padding=2, fontsize=8)
    ax.set_yticks(y, [ERROR_NAMES[name] for name in names])
    ax.invert_yaxis()
    ax.set_xlabel("dAP (AP points)")
    ax.margins(x=0.18)
    ax.grid(axis="x", alpha=0.3)


def _f1_figure(analysis: dict) -> Figure:
    """F1 against the score threshold: each class a thin line (named up to LEGEND_MAX classes, grey
    beyond), the mean over classes bold, the suggested threshold marked on it."""
    curve = analysis["f1_curve"]
    thresholds = curve["thresholds"]
    per_class = curve["per_class"]
    named = len(per_class) <= LEGEND_MAX
    fig = _figure(9.0, 4.5)
    ax = fig.add_subplot()
    for (name, f1), color in zip(per_class.items(), _class_colors(len(per_class))):
        if named:
            ax.plot(thresholds, f1, lw=1.0, alpha=0.8, color=color, label=_short(name))
        else:
            ax.plot(thresholds, f1, lw=0.6, alpha=0.35, color="0.55")
    ax.plot(thresholds, curve["f1"], lw=2.5, color="black", label="mean")
    suggested = analysis["suggested_score_threshold"]
    if suggested is not None:
        ax.axvline(suggested["threshold"], color="#D62728", lw=0.8, ls="--")
        label = f"suggested {suggested['threshold']:.2f} (F1 {suggested['f1']:.2f})"
        ax.plot([suggested["threshold"]], [suggested["f1"]], "o", ms=8, color="#D62728", label=label)
    ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel="score threshold", ylabel="F1")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def _pr_figure(analysis: dict) -> Figure:
    """Precision against recall of each class (VOC, IoU 0.5, detections ranked by score): one panel
    with a legend up to LEGEND_MAX classes, one small panel per class beyond."""
    per_class = analysis["per_class"]
    if len(per_class) > LEGEND_MAX:
        return _pr_grid(per_class)
    fig = _figure(9.0, 5.0)
    ax = fig.add_subplot()
    for (name, stats), color in zip(per_class.items(), _class_colors(len(per_class))):
        curve = stats["pr_curve"]
        if curve["recall"]:
            label = f"{_short(name)} (AP {percent(stats['ap']['voc'])})"
            ax.plot(curve["recall"], curve["precision"], lw=1.3, color=color, label=label)
    ax.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no class has a PR curve", ha="center", va="center", transform=ax.transAxes)
    return fig


def _pr_grid(per_class: dict) -> Figure:
    """One small square panel per class, PR_GRID_COLUMNS to a row, all drawn in one Axes (one Axes per
    panel takes seconds to draw for 80 classes): recall 0..1 to the right, precision 0..1 up, light
    lines at 0.5."""
    from matplotlib.collections import LineCollection

    step_x, step_y = 1.2, 1.55  # panel pitch in data units (a panel is 1 x 1)
    rows = math.ceil(len(per_class) / PR_GRID_COLUMNS)
    span_x, span_y = PR_GRID_COLUMNS * step_x, rows * step_y
    fig = _figure(13.0, 13.0 * span_y / span_x, layout=None)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set(xlim=(-0.1, span_x - 0.1), ylim=(1.4 - span_y, 1.4))
    ax.set_axis_off()
    frames, guides, curves = [], [], []
    for i, (name, stats) in enumerate(per_class.items()):
        x0, y0 = (i % PR_GRID_COLUMNS) * step_x, -(i // PR_GRID_COLUMNS) * step_y
        frames.append([(x0, y0), (x0 + 1, y0), (x0 + 1, y0 + 1), (x0, y0 + 1), (x0, y0)])
        guides += [[(x0 + 0.5, y0), (x0 + 0.5, y0 + 1)], [(x0, y0 + 0.5), (x0 + 1, y0 + 0.5)]]
        title = f"{_short(name, 20)}\nAP {percent(stats['ap']['voc'])}"
        ax.text(x0 + 0.5, y0 + 1.03, title, ha="center", va="bottom", fontsize=7, linespacing=1.1)
        curve = stats["pr_curve"]
        if curve["recall"]:
            curves.append(np.column_stack([x0 + np.asarray(curve["recall"]), y0 + np.asarray(curve["precision"])]))
        else:
            ax.text(x0 + 0.5, y0 + 0.5, "no curve", ha="center", va="center", fontsize=7, color="0.4")
    ax.add_collection(LineCollection(guides, colors="0.88", linewidths=0.6))
    ax.add_collection(LineCollection(frames, colors="0.2", linewidths=0.8))
    ax.add_collection(LineCollection(curves, colors="#1F77B4", linewidths=1.1))
    return fig


def _ap_by_size_figure(analysis: dict) -> Figure:
    """COCO AP (IoU 0.5:0.95) of each class's small, medium and large objects, grouped horizontal
    bars, one group per class; a size with no object of the class (-1) has no bar."""
    per_class = analysis["per_class"]
    names = list(per_class)
    fig = _figure(9.0, max(2.5, 1.3 + 0.32 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    for i, (size, color) in enumerate(zip(SIZES, SIZE_COLORS)):
        values = np.array([per_class[name]["ap_by_size"][size] for name in names], dtype=float)
        kept = values >= 0
        ax.barh(y[kept] + (i - 1) * 0.27, 100.0 * values[kept], 0.27, color=color, label=size)
    ax.set_yticks(y, [_short(name) for name in names], fontsize=9)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set(xlim=(0.0, 100.0), xlabel="COCO AP, IoU 0.5:0.95 (%)")
    ax.tick_params(axis="x", top=True, labeltop=len(names) > LEGEND_MAX)  # a tall figure: a scale at both ends
    ax.grid(axis="x", alpha=0.3)
    if ax.patches:
        fig.legend(loc="outside upper left", ncols=3, fontsize=8, frameon=False)
    else:
        ax.text(50.0, (len(names) - 1) / 2, "no class has ground truth", ha="center", va="center")
    return fig


def points(value: float) -> str:
    """A fraction in AP points (percent) with one decimal, as TIDE prints them; '–' when not finite."""
    return f"{100.0 * value:.1f}" if math.isfinite(value) else "–"


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal; '–' for undefined (None or -1)."""
    return "–" if value is None or value < 0 else f"{100.0 * value:.1f}"
