"""The dataset group files match the DatasetConfig schema."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from frcnn.data.config import VOC_CLASSES, DatasetConfig, DatasetFormat, InvalidBoxPolicy

GROUP = Path(__file__).resolve().parents[2] / "configs" / "dataset"


@pytest.mark.parametrize("name", ["shapes", "voc", "coco"])
def test_group_file_matches_schema(name):
    cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(GROUP / f"{name}.yaml"))
    assert cfg.name == name
    assert cfg.size_divisibility == 32


def test_defaults_per_dataset():
    voc, coco, shapes = (
        OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(GROUP / f"{n}.yaml"))
        for n in ("voc", "coco", "shapes")
    )
    assert voc.train_sets == ["2007-trainval", "2012-trainval"] and voc.test_sets == ["2007-test"]
    assert voc.classes is None and len(VOC_CLASSES) == 20 and voc.min_size == [600] and voc.max_size == 1000
    assert coco.format == DatasetFormat.coco and coco.train.annotations == "annotations/instances_train2017.json"
    assert coco.test.images == "val2017" and coco.invalid_boxes == InvalidBoxPolicy.clip
    assert shapes.classes == ["circle", "square", "triangle"]
    assert OmegaConf.to_object(shapes) == DatasetConfig()  # the schema defaults are the shapes file


def test_schema_rejects_unknown_keys_and_values():
    cfg = OmegaConf.structured(DatasetConfig)
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(cfg, {"min_sizes": [600]})
    with pytest.raises(ValidationError):
        OmegaConf.merge(cfg, {"format": "kitti"})
