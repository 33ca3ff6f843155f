"""The analysis report: every figure it references is a PNG beside it, user text is escaped, the page is
offline, and headless Chromium loads every image with no script error."""

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frcnn.evaluation.figures import confusion_matrix_image
from frcnn.evaluation.report import write_report
from frcnn.evaluation.tide import MAIN_ERRORS, SPECIAL_ERRORS

# Names and ids as a user's files may spell them: the page must show them, not parse them.
THREE_CLASSES = ["circle", "<square>", "tri & angle"]
ODD_IMAGE_ID = "img<1>&2"
FIGURES = {"tide.png", "confusion_matrix.png", "f1_confidence.png", "pr_curves.png", "ap_by_size.png"}
# Every tag the page may hold: no script, nothing a class name or an image id could open.
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "div", "span", "table", "thead",
    "tbody", "tr", "th", "td", "figure", "figcaption", "img",
}  # fmt: skip


def tide_values(rng, special=True):
    names = MAIN_ERRORS + SPECIAL_ERRORS if special else MAIN_ERRORS
    return {name: float(rng.uniform(0.0, 0.08)) for name in names}


def class_stats(rng, ground_truth=True):
    """One class's entry of analysis["per_class"]; without ground truth, what an unannotated class gives."""
    if not ground_truth:
        return {
            "num_objects": 0,
            "num_detections": 5,
            "ap": {"voc07": -1.0, "voc": -1.0, "coco": -1.0},
            "ap_by_size": dict.fromkeys(("small", "medium", "large"), -1.0),
            "objects_by_size": dict.fromkeys(("small", "medium", "large"), 0),
            "f1": None,
            "pr_curve": {"recall": [], "precision": []},
            "tide": None,
        }
    recall = np.linspace(0.0, rng.uniform(0.5, 1.0), 30)
    precision = np.clip(1.0 - recall**2 * rng.uniform(0.3, 1.0), 0.0, 1.0)
    sizes = {"small": int(rng.integers(0, 5)), "medium": int(rng.integers(1, 20)), "large": int(rng.integers(1, 20))}
    ap_by_size = {size: (float(rng.uniform(0.1, 0.9)) if count else -1.0) for size, count in sizes.items()}
    return {
        "num_objects": sum(sizes.values()),
        "num_detections": int(rng.integers(10, 900)),
        "ap": {"voc07": float(rng.uniform(0.4, 0.9)), "voc": float(rng.uniform(0.4, 0.9)), "coco": 0.4},
        "ap_by_size": ap_by_size,
        "objects_by_size": sizes,
        "f1": {"threshold": 0.5, "precision": 0.8, "recall": 0.7, "f1": 0.75},
        "pr_curve": {"recall": recall.tolist(), "precision": precision.tolist()},
        "tide": tide_values(rng),
    }


def make_analysis(class_names, ground_truth=True, num_worst=3, seed=0):
    """A hand-made analysis dict of the shape analysis.json holds, and its worst images' pictures."""
    rng = np.random.default_rng(seed)
    k = len(class_names)
    counts = rng.integers(0, 12, (k + 1, k + 1)) * (rng.random((k + 1, k + 1)) < 0.3)
    counts[np.arange(k), np.arange(k)] = rng.integers(20, 60, k)
    if not ground_truth:
        counts[:k] = 0
    counts[k, k] = 0
    rows = counts.sum(axis=1, keepdims=True)
    thresholds = np.linspace(0.0, 1.0, 101)
    per_class_f1 = {name: (rng.uniform(0.5, 0.95) * np.sin(np.pi * thresholds) ** 0.7).tolist() for name in class_names}
    mean_f1 = np.mean(list(per_class_f1.values()), axis=0) if ground_truth else np.zeros(101)
    best = int(np.argmax(mean_f1))
    pictures = [(f"worst_{i + 1:02d}.png", picture(rng)) for i in range(num_worst)]
    worst = [
        {
            "image_id": ODD_IMAGE_ID if i == 0 else 1000 + i,
            "file": file,
            "weight": 4 - i,
            "errors": {"cls": 0, "loc": 1, "both": 0, "dupe": i, "bkg": 2, "miss": 1},
        }
        for i, (file, _) in enumerate(pictures)
    ]
    analysis = {
        "iou_threshold": 0.5,
        "num_images": 100,
        "num_objects": int(counts[:k].sum()),
        "num_detections": 10000,
        "tide": {"ap": 0.61, **tide_values(rng)},
        "tide_coco": {"ap": 0.42, **tide_values(rng)},
        "confusion_matrix": {
            "classes": [*class_names, "background"],
            "counts": counts.tolist(),
            "normalized": (counts / np.maximum(rows, 1)).tolist(),
            "iou_threshold": 0.5,
            "score_threshold": 0.42,
        },
        "suggested_score_threshold": (
            {"threshold": float(thresholds[best]), "f1": float(mean_f1[best]), "precision": 0.8, "recall": 0.62}
            if ground_truth
            else None
        ),
        "f1_curve": {"thresholds": thresholds.tolist(), "f1": mean_f1.tolist(), "per_class": per_class_f1},
        "per_class": {name: class_stats(rng, ground_truth) for name in class_names},
        "worst_images": worst,
    }
    return json.loads(json.dumps(analysis)), pictures  # exactly what analysis.json gives back


def picture(rng):
    """An RGB uint8 [96, 128, 3] picture: a gradient with a box drawn on it."""
    y, x = np.mgrid[0:96, 0:128]
    image = np.stack([x * 2, y * 2, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    x0, y0 = rng.integers(10, 60, 2)
    image[y0 : y0 + 30, x0 : x0 + 3] = image[y0 : y0 + 3, x0 : x0 + 40] = (230, 159, 0)
    return image


class PageParser(HTMLParser):
    """The page's tags and its images' src attributes."""

    def __init__(self):
        super().__init__()
        self.tags, self.sources = set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def parse(index: Path) -> PageParser:
    parser = PageParser()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def check_report(index: Path, expected_images: set[str]) -> str:
    """Assert the page references exactly expected_images, each a PNG beside it; return the page."""
    page = index.read_text(encoding="utf-8")
    parser = parse(index)
    assert set(parser.sources) == expected_images
    assert parser.tags <= PAGE_TAGS, parser.tags - PAGE_TAGS
    for source in parser.sources:
        with Image.open(index.parent / source) as image:
            assert image.format == "PNG"
            image.verify()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page
    return page


@pytest.mark.parametrize("num_classes", [1, 3, 80])
def test_report_images_are_pngs_beside_the_page(tmp_path, num_classes):
    names = THREE_CLASSES if num_classes == 3 else [f"class_{i}" for i in range(num_classes)]
    analysis, pictures = make_analysis(names)
    index = write_report(analysis, pictures, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    check_report(index, FIGURES | {file for file, _ in pictures})
    assert not list(index.parent.glob("*.partial"))


def test_class_names_and_image_ids_are_escaped(tmp_path):
    analysis, pictures = make_analysis(THREE_CLASSES)
    page = check_report(write_report(analysis, pictures, tmp_path), FIGURES | {file for file, _ in pictures})
    assert "<square>" not in page and "&lt;square&gt;" in page
    assert "tri & angle" not in page and "tri &amp; angle" in page
    assert ODD_IMAGE_ID not in page and html.escape(ODD_IMAGE_ID) in page


def test_worst_images_are_written_as_given(tmp_path):
    analysis, pictures = make_analysis(THREE_CLASSES)
    write_report(analysis, pictures, tmp_path)
    for file, expected in pictures:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / file)), expected)


def test_no_ground_truth_and_no_worst_images(tmp_path):
    analysis, pictures = make_analysis(THREE_CLASSES, ground_truth=False, num_worst=0)
    page = check_report(write_report(analysis, pictures, tmp_path), FIGURES)
    assert "No score threshold suggested" in page
    assert "No image has an error" in page


def test_no_coco_iou_mean_and_a_class_without_detections(tmp_path):
    """tide_coco is None when the analysis skipped IoU 0.5:0.95; a class with objects and no
    detection has an F1 entry without a threshold."""
    analysis, pictures = make_analysis(THREE_CLASSES)
    analysis["tide_coco"] = None
    analysis["per_class"]["circle"]["f1"] = {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    analysis["per_class"]["circle"]["pr_curve"] = {"recall": [], "precision": []}
    page = check_report(write_report(analysis, pictures, tmp_path), FIGURES | {file for file, _ in pictures})
    assert "<th>IoU 0.5:0.95</th>" not in page


def test_a_worst_image_without_its_picture_is_refused(tmp_path):
    analysis, pictures = make_analysis(THREE_CLASSES)
    with pytest.raises(ValueError, match="worst_02.png"):
        write_report(analysis, pictures[:1] + pictures[2:], tmp_path)
    assert not (tmp_path / "index.html").exists()


@pytest.mark.parametrize("num_classes", [1, 3, 80])
def test_confusion_matrix_image_is_rgb_hwc(num_classes):
    analysis, _ = make_analysis([f"class_{i}" for i in range(num_classes)], num_worst=0)
    image = confusion_matrix_image(analysis["confusion_matrix"])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 300 and image.shape[1] >= 300
    assert image.std() > 0


# The browser check: a copy of the page whose script records load errors from the start and, once the
# page has loaded, writes a verdict that --dump-dom prints.
RECORD_ERRORS = """<script>
window.pageErrors = [];
window.addEventListener("error", (event) => {
  window.pageErrors.push(event.message || "failed to load " + (event.target.src || event.target.tagName));
}, true);
</script>"""
WRITE_VERDICT = """<script>
window.addEventListener("load", () => {
  const broken = Array.from(document.images).filter((image) => !(image.complete && image.naturalWidth > 0));
  const verdict = document.createElement("pre");
  verdict.id = "verdict";
  verdict.textContent = JSON.stringify({
    images: document.images.length,
    broken: broken.map((image) => image.getAttribute("src")),
    errors: window.pageErrors,
  });
  document.body.appendChild(verdict);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium (no sandbox: the tests may run as root) with its profile and HOME under
    tmp_path, and every host name unresolvable, so that the page must load from disk alone."""
    command = [
        shutil.which("chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=True)


def test_chromium_loads_every_figure(tmp_path):
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test, and chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (CI installs it: .ci/run)")
    analysis, pictures = make_analysis(THREE_CLASSES)
    index = write_report(analysis, pictures, tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    check = index.with_name("check.html")
    check.write_text(
        page.replace("<head>", "<head>\n" + RECORD_ERRORS, 1).replace("</body>", WRITE_VERDICT + "\n</body>", 1),
        encoding="utf-8",
    )
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", check.as_uri()).stdout
    found = re.search(r'<pre id="verdict">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"the page's load handler wrote no verdict:\n{dom[-2000:]}"
    verdict = json.loads(html.unescape(found.group(1)))
    assert verdict == {"images": len(FIGURES) + len(pictures), "broken": [], "errors": []}

    screenshot = tmp_path / "screenshot.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400", index.as_uri())
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 0
