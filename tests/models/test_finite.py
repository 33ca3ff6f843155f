"""Reliability of the model's inputs: non-finite RoIs raise a named error instead of crashing the
process in torchvision's kernels, and torchvision weights are fetched safely and explained offline."""

import math
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from frcnn.models import backbone as backbone_module
from frcnn.models.backbone import WeightsUnavailableError, build_resnet
from frcnn.models.finite import NonFiniteBoxError
from frcnn.models.fpn import FPN_STRIDES, POOLED_LEVELS
from frcnn.models.poolers import MultiLevelRoIAlign, RoIPooler
from frcnn.models.weights import load_weights


@pytest.mark.parametrize("kind", ["roi_align", "roi_pool"])
def test_nonfinite_rois_raise_instead_of_crashing(kind):
    pooler = RoIPooler(kind, output_size=7, spatial_scale=1 / 16, sampling_ratio=2, aligned=False)
    features = [torch.randn(1, 8, 8, 8)]
    rois = torch.tensor([[0.0, 0.0, 64.0, 64.0], [math.nan, 1.0, 1e40, 2.0], [0.0, -math.inf, 3.0, 4.0]])
    with pytest.raises(NonFiniteBoxError, match="2 of 3 RoIs have a non-finite coordinate"):
        pooler(features, rois, torch.zeros(3, dtype=torch.long))
    assert pooler(features, rois[:1], torch.zeros(1, dtype=torch.long)).shape == (1, 8, 7, 7)


def test_nonfinite_rois_raise_in_the_fpn_pooler():
    pooler = MultiLevelRoIAlign(output_size=7, sampling_ratio=2, strides=FPN_STRIDES[:POOLED_LEVELS])
    features = [torch.randn(1, 4, 64 // s, 64 // s) for s in FPN_STRIDES[:POOLED_LEVELS]]
    with pytest.raises(NonFiniteBoxError):
        pooler(features, torch.tensor([[0.0, 0.0, math.nan, 9.0]]), torch.zeros(1, dtype=torch.long))


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: every download fails as it does offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub" / "checkpoints"


def test_imagenet_weights_offline_say_where_to_put_the_file(empty_torch_cache):
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    with pytest.raises(WeightsUnavailableError) as info:
        build_resnet(18, "imagenet")
    message = str(info.value)
    assert "\n" not in message and url in message
    assert str(empty_torch_cache / Path(url).name) in message
    assert f"model.backbone.weights=/path/to/{Path(url).name}" in message
    assert isinstance(info.value, FileNotFoundError)  # a one-line usage error for the commands


class _RunsCode:
    """A pickle that runs code when unpickled (what a poisoned shared cache could hold)."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant(cache: Path, url: str, marker: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    payload = _RunsCode()
    payload.marker = marker
    with open(cache / Path(url).name, "wb") as f:
        torch.save({"conv1.weight": payload}, f)


def test_cached_imagenet_weights_are_not_unpickled(empty_torch_cache, tmp_path):
    marker = tmp_path / "code_ran"
    _plant(empty_torch_cache, torchvision.models.ResNet18_Weights.DEFAULT.url, marker)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        backbone_module.build_resnet(18, "imagenet")
    assert not marker.exists()


def test_cached_torchvision_detector_weights_are_not_unpickled(empty_torch_cache, tmp_path):
    marker = tmp_path / "code_ran"
    weights = torchvision.models.get_model_weights("fasterrcnn_resnet50_fpn").DEFAULT
    _plant(empty_torch_cache, weights.url, marker)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_weights(torch.nn.Linear(1, 1), "torchvision:fasterrcnn_resnet50_fpn")
    assert not marker.exists()
