"""``frcnn.bench.config``: configs/benchmark.yaml composes against its schema, which checks the overrides."""

import pytest
from hydra.errors import ConfigCompositionException

from frcnn.bench.config import SECTIONS
from frcnn.utils.device import Amp
from tests.helpers.configs import compose_config


def test_the_benchmark_config_composes_with_every_section_node():
    cfg = compose_config("benchmark")
    assert list(cfg.sections) == ["model", "data", "eval", "export"]
    assert set(cfg.sections) < set(SECTIONS)
    for section in ("compare", "data", "eval", "val_loss", "export", "accuracy"):
        assert section in cfg, section
    assert cfg.compare.amp is Amp.off and list(cfg.accuracy.variants) == ["ours"]


def test_overrides_are_checked_and_variants_extend():
    cfg = compose_config("benchmark", "compare.amp=bf16", '+accuracy.variants.offset_half=["model.anchors.offset=0.5"]')
    assert cfg.compare.amp is Amp.bf16
    assert dict(cfg.accuracy.variants) == {"ours": [], "offset_half": ["model.anchors.offset=0.5"]}
    for bad in ("compare.amp=fp32", "compare.batch_size=two", "compare.no_such_key=1"):
        with pytest.raises(ConfigCompositionException):
            compose_config("benchmark", bad)
