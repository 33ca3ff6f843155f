"""torchvision's trained detectors as frcnn checkpoints: ``checkpoint=torchvision:<name>``.

``torchvision_checkpoint(name)`` wraps such a detector as a checkpoint (weights renamed key by
key, class names from the weights' metadata, the model config that is the same network, a COCO
dataset node), so that ``checkpoint=torchvision:fasterrcnn_resnet50_fpn`` evaluates, predicts
and exports as is.
"""

from omegaconf import OmegaConf

from frcnn.checkpoint.format import Checkpoint
from frcnn.config.compose import group_option
from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig
from frcnn.models.weights import TORCHVISION_PREFIX, from_torchvision, torchvision_state_dict
from frcnn.utils.settings import plain

# torchvision detector -> the configs/model file that builds the same network.
TORCHVISION_MODEL_CONFIGS = {
    "fasterrcnn_resnet50_fpn": "resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2": "resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn": "mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "mobilenet_v3_large_320_fpn",
}
# Its test-time input, torchvision's GeneralizedRCNNTransform sizes: 800 px short side up to 1333,
# or the 320 one's 320 up to 640.
_TORCHVISION_TEST_SIZES = {"min_size": [800], "test_min_size": 800, "max_size": 1333}
_TORCHVISION_320_TEST_SIZES = {"min_size": [320], "test_min_size": 320, "max_size": 640}


def torchvision_checkpoint(source: str) -> Checkpoint:
    """``torchvision:<name>`` as an frcnn checkpoint (weights only).

    It holds ``model`` (frcnn key names), ``class_names`` (the weights' categories without the
    background: COCO_V1's 90 ids 1..90, "N/A" at the unused ones, so label ``k`` is COCO category
    ``k``), ``config`` (``model``: configs/model/<same network>.yaml with no backbone download and
    the norm layers of the weights: ``norm: auto`` is frozen BatchNorm, as v1's; v2's ``bn`` stays;
    ``dataset``: configs/dataset/coco.yaml at torchvision's 800/1333 test size, 320/640 for
    ``fasterrcnn_mobilenet_v3_large_320_fpn``) ``category_ids``
    (1..90) and ``iteration`` 0.
    """
    name = source[len(TORCHVISION_PREFIX) :]
    if name not in TORCHVISION_MODEL_CONFIGS:
        raise ValueError(
            f"checkpoint={source}: frcnn builds {sorted(TORCHVISION_MODEL_CONFIGS)} of torchvision's "
            f"detectors, not {name!r}"
        )
    state, categories = torchvision_state_dict(name)
    class_names = list(categories)[1:]
    return Checkpoint(
        model=from_torchvision(state),
        config=torchvision_config(name),
        class_names=class_names,
        category_ids=list(range(1, len(class_names) + 1)),
        iteration=0,
    )


def torchvision_config(name: str) -> dict:
    """The checkpoint config of torchvision detector ``name`` (a key of
    :data:`TORCHVISION_MODEL_CONFIGS`): ``model``, the configs/model file of the same network with
    no backbone download and the weights' norm layers; ``dataset``, configs/dataset/coco.yaml at
    torchvision's test size; ``seed``. Plain containers, as a checkpoint stores them."""
    model_cfg = OmegaConf.merge(ModelConfig, group_option("model", TORCHVISION_MODEL_CONFIGS[name]))
    model_cfg.backbone.weights = None
    if model_cfg.backbone.norm == "auto":
        model_cfg.backbone.norm = "frozen_bn"
    sizes = _TORCHVISION_320_TEST_SIZES if name.endswith("_320_fpn") else _TORCHVISION_TEST_SIZES
    dataset_cfg = OmegaConf.merge(DatasetConfig, group_option("dataset", "coco"), sizes)
    return {"model": plain(model_cfg), "dataset": plain(dataset_cfg), "seed": 0}
