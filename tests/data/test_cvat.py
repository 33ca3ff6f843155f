"""CVAT for images 1.1 parsing against an annotations.xml written by the test: shapes to boxes,
subsets as splits, occluded objects, every fault named."""

import math
import xml.etree.ElementTree as ET

import pytest
import torch

from frcnn.data.cvat import CVATDetection, parse_cvat
from frcnn.data.transforms import DetectionTransform
from frcnn.data.validation import DatasetError
from tests.helpers.datasets import write_image

TRANSFORM = DetectionTransform((64,), 128)

META = "<meta><task><name>t</name><labels>{}</labels></task></meta>"
# an attribute's <name> is not a label's
LABEL = "<label><name>{}</name><attributes><attribute><name>pose</name></attribute></attributes></label>"
IMAGES = """
<image id="0" name="a.jpg" subset="Train" width="48" height="32">
  <box label="cat" occluded="0" source="manual" xtl="10.5" ytl="2.25" xbr="30" ybr="20" z_order="0"/>
  <tag label="indoor" source="manual"/>
  <polygon label="dog" occluded="1" points="5.00,6.00;20.00,4.00;12.00,18.00" z_order="0"/>
  <ellipse label="cat" occluded="0" cx="24" cy="16" rx="5" ry="3.5" z_order="0"/>
</image>
<image id="1" name="sub/b.jpg" subset="train" width="40" height="40"></image>
<image id="2" name="c.png" subset="Validation" width="32" height="32">
  <box label="bird" occluded="0" xtl="1" ytl="1" xbr="9" ybr="9" z_order="0"/>
</image>
"""


def write_cvat(root, images=IMAGES, labels=("dog", "cat", "bird"), write_images=True):
    """root/annotations.xml (``labels`` in <meta>; None: no <meta>) and, from its <image> sizes, root/images/."""
    meta = META.format("".join(LABEL.format(n) for n in labels)) if labels is not None else ""
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.xml").write_text(f"<?xml version='1.0' encoding='utf-8'?>\n<annotations>"
                                          f"<version>1.1</version>{meta}{images}</annotations>")  # fmt: skip
    if write_images:
        for image in ET.fromstring(f"<a>{images}</a>").iter("image"):
            write_image(str(root / "images" / image.get("name")), int(image.get("width")), int(image.get("height")))
    return root


def test_cvat_shapes_become_boxes(tmp_path):
    root = write_cvat(tmp_path)
    ds = CVATDetection(str(root), ["train"], transform=TRANSFORM, train=False)
    assert ds.class_names == ["dog", "cat", "bird"]  # the <meta> labels in their order
    assert ds.category_ids == [1, 2, 3]
    assert ds.image_ids == ["a", "sub/b"]  # subsets "Train" and "train" both match "train"
    a = ds.get_annotation(0)
    assert (a["height"], a["width"]) == (32, 48)
    expected = [[10.5, 2.25, 30, 20], [5, 4, 20, 18], [19, 12.5, 29, 19.5]]
    assert torch.allclose(a["boxes"], torch.tensor(expected, dtype=torch.float32), atol=1e-4)
    assert a["labels"].tolist() == [2, 1, 2]  # the <tag> is not an object
    assert a["difficult"].tolist() == [False, False, False]  # occluded is ordinary by default
    assert ds.get_annotation(1)["boxes"].shape == (0, 4)  # an image without objects is kept
    assert ds.image_path(1) == f"{root}/images/sub/b.jpg"
    val = CVATDetection(str(root), ["VALIDATION"], transform=TRANSFORM, train=False)
    assert val.image_ids == ["c"] and val.get_annotation(0)["labels"].tolist() == [3]
    both = parse_cvat(str(root), ["validation", "train"])
    assert both.index.image_ids.tolist() == ["c", "a", "sub/b"]


def test_cvat_occluded_as_difficult(tmp_path):
    root = write_cvat(tmp_path)
    ds = CVATDetection(str(root), ["train"], occluded_as_difficult=True, transform=TRANSFORM, train=True,
                       use_difficult=False)  # fmt: skip
    assert ds.get_annotation(0)["difficult"].tolist() == [False, True, False]
    _, target = ds[0]
    assert target["labels"].tolist() == [2, 2]  # the difficult (occluded) dog left out of training


def test_cvat_classes_given_or_collected(tmp_path):
    root = write_cvat(tmp_path / "meta")
    ds = CVATDetection(str(root), ["train"], ["cat", "dog"], transform=TRANSFORM, train=False)
    assert ds.class_names == ["cat", "dog"] and ds.get_annotation(0)["labels"].tolist() == [1, 2, 1]
    bare = write_cvat(tmp_path / "bare", labels=None)
    assert parse_cvat(str(bare), ["train"]).class_names == ["bird", "cat", "dog"]  # every label used, sorted
    project = tmp_path / "project"
    write_cvat(project, labels=["zebra", "cat", "dog", "bird"])
    xml = (project / "annotations.xml").read_text().replace("<task>", "<project>").replace("</task>", "</project>")
    (project / "annotations.xml").write_text(xml)
    assert parse_cvat(str(project), ["train"]).class_names == ["zebra", "cat", "dog", "bird"]


def test_cvat_unlisted_classes(tmp_path):
    root = write_cvat(tmp_path)
    with pytest.raises(DatasetError, match=r"image 'a\.jpg': <polygon> 2 \('dog'\): unknown class name 'dog'"):
        CVATDetection(str(root), ["train"], ["cat"], transform=TRANSFORM, train=False)
    ds = CVATDetection(str(root), ["train"], ["cat"], unlisted_classes="ignore", transform=TRANSFORM, train=False)
    assert ds.get_annotation(0)["labels"].tolist() == [1, 1]


def test_cvat_item_goes_through_the_dataset_path(tmp_path):
    ds = CVATDetection(str(write_cvat(tmp_path)), ["train"], transform=TRANSFORM, train=True)
    image, target = ds[0]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 64, 96)  # 32x48 resized to short side 64
    assert target["image_id"] == "a" and target["orig_size"] == (32, 48)
    assert torch.allclose(target["boxes"][0], torch.tensor([21, 4.5, 60, 40]), atol=1e-4)
    assert ds[1][1]["boxes"].shape == (0, 4)


def test_cvat_rotated_box_and_ellipse_are_enclosed(tmp_path):
    images = """<image id="0" name="r.jpg" width="64" height="64">
      <box label="cat" occluded="0" xtl="10" ytl="20" xbr="30" ybr="30" rotation="90" z_order="0"/>
      <ellipse label="cat" occluded="0" cx="32" cy="32" rx="10" ry="5" rotation="45" z_order="0"/>
    </image>"""
    parsed = parse_cvat(str(write_cvat(tmp_path, images, write_images=False)), ["default"], ["cat"])
    e = math.sqrt((100 + 25) / 2)  # half extent of the ellipse turned 45 degrees
    expected = [[15, 15, 25, 35], [32 - e, 32 - e, 32 + e, 32 + e]]
    assert torch.allclose(torch.from_numpy(parsed.index.boxes), torch.tensor(expected), atol=1e-4)


def test_cvat_faults_are_named(tmp_path):
    images = """
    <image id="0" name="a.jpg" subset="train" width="48" height="32">
      <box label="cat" occluded="0" xtl="ten" ytl="2" xbr="30" ybr="20" z_order="0"/>
      <polygon label="cat" occluded="0" points="1,2;3" z_order="0"/>
      <polyline label="cat" occluded="0" points="1,2;3,4" z_order="0"/>
      <ellipse label="cat" occluded="0" cx="5" cy="5" rx="2" z_order="0"/>
    </image>
    <image id="1" name="b.jpg" subset="train" width="48"></image>
    <image id="2" name="a.jpg" subset="train" width="48" height="32"></image>
    <image id="3" name="a.png" subset="train" width="48" height="32"></image>
    """
    root = write_cvat(tmp_path, images, labels=["cat"], write_images=False)
    with pytest.raises(DatasetError) as info:
        CVATDetection(str(root), ["train"], transform=TRANSFORM, train=False)
    message = str(info.value)
    xml = f"{root}/annotations.xml"
    assert f"{xml}: image 'a.jpg': <box> 0 ('cat'): missing or non-numeric 'xtl': 'ten'" in message
    assert f"{xml}: image 'a.jpg': <polygon> 1 ('cat'): 'points' is not a list of x,y numbers" in message
    assert f"{xml}: image 'a.jpg': <polyline> 2 ('cat'): not a box (box, polygon or ellipse)" in message
    assert f"{xml}: image 'a.jpg': <ellipse> 3 ('cat'): missing or non-numeric 'ry': None" in message
    assert f"{xml}: image 'b.jpg': missing or invalid size: width '48', height None" in message
    assert f"{xml}: image 'a.jpg': listed twice" in message
    assert f"{xml}: image 'a.png': same image id 'a' as 'a.jpg'" in message
    assert "7 problems" in message
    with pytest.raises(DatasetError, match=r"no image in subset 'test' \(the file's subsets: 'train'\)"):
        parse_cvat(str(root), ["test"])
    (root / "annotations.xml").write_text("<annotations><image name='a.jpg'></annotations>")
    with pytest.raises(DatasetError, match=r"annotations\.xml: malformed XML \(mismatched tag"):
        parse_cvat(str(root), ["train"])


def test_cvat_box_outside_the_image_follows_invalid_boxes(tmp_path):
    images = """<image id="0" name="a.jpg" width="48" height="32">
      <box label="cat" occluded="0" xtl="40" ytl="10" xbr="60" ybr="20" z_order="0"/>
    </image>"""
    root = write_cvat(tmp_path, images, labels=["cat"])
    with pytest.raises(DatasetError, match=r"annotations\.xml: image 'a\.jpg': <box> 0 \('cat'\): box extends outside"):
        CVATDetection(str(root), ["default"], transform=TRANSFORM, train=False)
    ds = CVATDetection(str(root), ["default"], invalid_boxes="clip", transform=TRANSFORM, train=False)
    assert ds.get_annotation(0)["boxes"].tolist() == [[40, 10, 48, 20]]
