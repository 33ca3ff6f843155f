"""The analysis report: one offline HTML page, ``index.html``, with its figures as PNG files beside it.

Shape shorthand: K object classes; the confusion matrix is (K + 1) x (K + 1), its last row and column
the background. Every number on the page comes from the analysis dict that ``analysis.json`` holds
(fractions; the page shows them as percentages, TIDE's dAPs as AP points). The page has no script,
no external style or font and no URL: a browser opens it from disk.

The figures are drawn by :mod:`frcnn.evaluation.figures`.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from frcnn.evaluation.figures import (
    ERROR_COLORS,
    ERROR_NAMES,
    LEGEND_MAX,
    SIZES,
    hex_color,
    percent,
    points,
    save_figures,
)
from frcnn.evaluation.tide import MAIN_ERRORS, SPECIAL_ERRORS
from frcnn.utils.files import write_atomic
from frcnn.utils.visualize import ERROR_STYLE

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
  max-width:1300px;margin:1.5em auto;padding:0 1em;line-height:1.45}
h1{margin-bottom:0.2em} h2{margin-top:1.8em;border-bottom:1px solid #ccc;padding-bottom:0.2em}
.summary{color:#555;margin-top:0}
table{border-collapse:collapse;margin:0.5em 0 1em;font-variant-numeric:tabular-nums;font-size:0.92em}
th,td{padding:0.25em 0.7em;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #999;background:#f6f6f6;white-space:normal;vertical-align:bottom}
.scroll{overflow-x:auto}
figure{margin:0.5em 0 1.2em} figcaption{color:#555;font-size:0.92em;max-width:60em}
.worst{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.worst figure{margin:0;max-width:100%}
.worst img{max-width:100%;min-width:min(320px,100%);height:auto;border:1px solid #ccc}
.swatch{display:inline-block;width:0.85em;height:0.85em;border:1px solid rgba(0,0,0,0.3);
  vertical-align:-0.1em;margin:0 0.25em 0 0.6em}
"""


def write_report(analysis: dict, worst_images: list[tuple[str, np.ndarray]], folder: Path) -> Path:
    """Write ``folder/index.html`` and its figures and pictures beside it; return the index's path.

    worst_images: (file name, RGB uint8 [H, W, 3]) pairs, the drawn pictures that
    ``analysis["worst_images"]`` names by ``"file"``. The figures and pictures are written first and
    the index last (through a temporary file), so that an index on disk has all its images.
    """
    folder = Path(folder)
    pictures = dict(worst_images)
    missing = [entry["file"] for entry in analysis["worst_images"] if entry["file"] not in pictures]
    if missing:
        raise ValueError(f"worst_images has no picture for {missing}")
    folder.mkdir(parents=True, exist_ok=True)
    for name, picture in pictures.items():
        if Path(name).name != name:
            raise ValueError(f"a worst image's file name must be a plain file name, not {name!r}")
        Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(folder / name, format="PNG")
    save_figures(analysis, folder)
    index = folder / "index.html"
    write_atomic(index, _page(analysis))
    return index


# The page.


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of plain-text cells (escaped here)."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>'


def _img(file: str, alt: str) -> str:
    return f'<img src="{html.escape(quote(file))}" alt="{html.escape(alt)}">'


def _figure_html(file: str, alt: str, caption: str) -> str:
    return f'<figure class="scroll">{_img(file, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _page(analysis: dict) -> str:
    summary = (
        f"{analysis['num_images']} images, {analysis['num_objects']} objects, {analysis['num_detections']} "
        f"detections; a detection matches an object at IoU ≥ {analysis['iou_threshold']:g}."
    )
    sections = [
        f'<h1>Detection analysis</h1>\n<p class="summary">{html.escape(summary)}</p>',
        _tide_html(analysis),
        _confusion_html(analysis["confusion_matrix"]),
        _threshold_html(analysis["suggested_score_threshold"]),
        _classes_html(analysis),
        _worst_html(analysis["worst_images"]),
    ]
    body = "\n\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Detection analysis</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _tide_html(analysis: dict) -> str:
    columns = [("IoU 0.5", analysis["tide"])]
    if analysis["tide_coco"] is not None:
        columns.append(("IoU 0.5:0.95", analysis["tide_coco"]))
    rows = [["AP", *(points(tide["ap"]) for _, tide in columns)]]
    for name in (*MAIN_ERRORS, *SPECIAL_ERRORS):
        rows.append([f"{ERROR_NAMES[name]} ({name})", *(points(tide[name]) for _, tide in columns)])
    caption = (
        "dAP: the AP points gained by fixing every error of one type (TIDE, Bolya et al. 2020); false "
        "positives and false negatives: removing all of them."
    )
    if len(columns) == 2:
        caption += " Solid bars at IoU 0.5, pale bars averaged over IoU 0.5:0.95."
    return (
        "<h2>Errors (TIDE)</h2>\n"
        + _table(["AP points", *(label for label, _ in columns)], rows)
        + "\n"
        + _figure_html("tide.png", "TIDE dAP per error type", caption)
        + "\n"
    )


def _confusion_html(confusion: dict) -> str:
    caption = (
        f"Detections with score ≥ {confusion['score_threshold']:.2f} matched to objects at IoU ≥ "
        f"{confusion['iou_threshold']:g}. Rows: the ground-truth class; the row 'background' counts the "
        "detections that matched no object (false positives). Columns: the predicted class; the column "
        "'background' counts the objects that no detection found (missed). Colour: the fraction of the row; "
        "numbers: counts."
    )
    return "<h2>Confusion matrix</h2>\n" + _figure_html("confusion_matrix.png", "confusion matrix", caption)


def _threshold_html(suggested: dict | None) -> str:
    if suggested is None:
        sentence = "No score threshold suggested: no class has ground truth."
    else:
        sentence = (
            f"Suggested score threshold: {suggested['threshold']:.2f}, where the mean F1 over classes is highest: "
            f"F1 {percent(suggested['f1'])} %, precision {percent(suggested['precision'])} %, "
            f"recall {percent(suggested['recall'])} %."
        )
    caption = "F1 against the score threshold: each class thin, the mean over classes bold, the suggestion marked."
    return f"<h2>Score threshold</h2>\n<p>{html.escape(sentence)}</p>\n" + _figure_html(
        "f1_confidence.png", "F1 against score threshold", caption
    )


def _classes_html(analysis: dict) -> str:
    header = ["class", "objects", "detections", "AP VOC07", "AP VOC", "AP COCO"]
    header += [f"AP {size} (objects)" for size in SIZES]
    header += ["F1-best threshold", "its precision", "its recall", "largest error (dAP)"]
    rows = [_class_row(name, stats) for name, stats in analysis["per_class"].items()]
    pr_caption = "Precision against recall per class (VOC, IoU 0.5), with the class's VOC AP."
    if len(analysis["per_class"]) > LEGEND_MAX:
        pr_caption += " One panel per class: recall 0 to 1 to the right, precision 0 to 1 up; light lines at 0.5."
    size_caption = "COCO AP per object size (small < 32², medium < 96² pixels, large); no bar: no object of that size."
    return (
        "<h2>Per class</h2>\n"
        + _figure_html("pr_curves.png", "precision-recall curves", pr_caption)
        + "\n"
        + _figure_html("ap_by_size.png", "AP by object size", size_caption)
        + "\n<p>AP, precision and recall in %; '–': undefined (no ground truth).</p>\n"
        + _table(header, rows)
    )


def _class_row(name: str, stats: dict) -> list[str]:
    ap = stats["ap"]
    sizes = [f"{percent(stats['ap_by_size'][size])} ({stats['objects_by_size'][size]})" for size in SIZES]
    f1 = stats["f1"]
    if f1 is None:  # no ground truth
        best = ["–", "–", "–"]
    else:  # a threshold of None: the class has no detection
        threshold = "–" if f1["threshold"] is None else f"{f1['threshold']:.2f}"
        best = [threshold, percent(f1["precision"]), percent(f1["recall"])]
    return [
        name,
        str(stats["num_objects"]),
        str(stats["num_detections"]),
        percent(ap["voc07"]),
        percent(ap["voc"]),
        percent(ap["coco"]),
        *sizes,
        *best,
        _largest_error(stats["tide"]),
    ]


def _largest_error(tide: dict | None) -> str:
    if tide is None:
        return "–"
    name = max(MAIN_ERRORS, key=lambda error: tide[error])
    return "none" if tide[name] <= 0 else f"{ERROR_NAMES[name]} ({points(tide[name])})"


def _worst_html(worst: list[dict]) -> str:
    if not worst:
        return "<h2>Worst images</h2>\n<p>No image has an error.</p>"
    legend = "".join(f"{_swatch(hex_color(rgb))}{html.escape(text)}" for rgb, text in ERROR_STYLE.values())
    figures = "\n".join(_worst_figure(entry) for entry in worst)
    return (
        "<h2>Worst images</h2>\n<p>The images with the most errors at the confusion matrix's score threshold, "
        "worst first. Detections are drawn solid, objects dashed (white: found by a detection); colours:"
        f'{legend}.</p>\n<div class="worst">\n{figures}\n</div>'
    )


def _worst_figure(entry: dict) -> str:
    image_id = str(entry["image_id"])
    counts = entry["errors"]
    errors = "".join(f"{_swatch(ERROR_COLORS[name])}{name} {counts[name]}" for name in MAIN_ERRORS if counts[name])
    caption = f"<b>{html.escape(image_id)}</b> · weight {entry['weight']:g}{errors or ' · no error'}"
    return f"<figure>{_img(entry['file'], 'image ' + image_id)}<figcaption>{caption}</figcaption></figure>"
