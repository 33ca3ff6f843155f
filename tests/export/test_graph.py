"""The pieces of the export: batch-norm folding, the NMS op against ONNX Runtime's, multi-level
RoIAlign in ONNX Runtime, the graph as the model's own stages, the C4 head with its 1x1
convolutions before RoIAlign, model.json, the export's errors and the runtime options of the
command line."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from onnx import TensorProto, helper
from torchvision.ops.misc import FrozenBatchNorm2d

import frcnn.config.commands  # noqa: F401  (registers predict_schema)
from frcnn.checkpoint.io import CheckpointError
from frcnn.cli.runtime_option import check_runtime, route_model_argument
from frcnn.export import OnnxDetector, export_checkpoint, read_metadata
from frcnn.export.exporter import write_onnx
from frcnn.export.fold import fold_batch_norms
from frcnn.export.graph import DetectorGraph
from frcnn.export.hoist import HoistedRes5Head, can_hoist
from frcnn.export.metadata import ExportMetadata
from frcnn.export.nms import onnx_non_max_suppression
from frcnn.models import build_model
from frcnn.models.fpn import FPN_STRIDES, POOLED_LEVELS
from frcnn.models.nms import LOWEST_SCORE, non_max_suppression
from frcnn.models.poolers import MultiLevelRoIAlign
from frcnn.models.topk import top_k
from tests.helpers.checkpoints import VARIANTS, shapes_batch, tiny_config
from tests.helpers.configs import REPO


def randomise_norms(net: torch.nn.Module, norm=(torch.nn.BatchNorm2d, FrozenBatchNorm2d)) -> None:
    """Non-trivial statistics and affine parameters in every norm layer of ``net``."""
    for module in net.modules():
        if isinstance(module, norm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("norm", [torch.nn.BatchNorm2d, FrozenBatchNorm2d])
def test_folded_resnet_equals_the_original(norm):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, norm_layer=norm).eval()
    randomise_norms(net, norm)
    images = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        expected = net(images)
        assert fold_batch_norms(net) == 20  # stem + 2 per block x 8 + 3 downsamples
        assert not any(isinstance(m, norm) for m in net.modules())
        assert torch.allclose(net(images), expected, atol=1e-4, rtol=1e-4)


def onnx_nms(boxes: np.ndarray, scores: np.ndarray, max_output: int, iou: float, score_thresh: float) -> np.ndarray:
    """Run one ONNX NonMaxSuppression node in ONNX Runtime."""
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_output", "iou", "score"], ["selected"])
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, None)],
        [helper.make_tensor("max_output", TensorProto.INT64, [1], [max_output]),
         helper.make_tensor("iou", TensorProto.FLOAT, [1], [iou]),
         helper.make_tensor("score", TensorProto.FLOAT, [1], [score_thresh])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"boxes": boxes, "scores": scores})[0]


@pytest.mark.parametrize("score_thresh", [0.25, LOWEST_SCORE])
def test_models_nms_has_onnxruntime_semantics(score_thresh):
    """The models' NMS mask holds exactly the boxes ONNX Runtime's NonMaxSuppression selects, and
    the export's version (the operator's rows scattered into a mask) gives the same mask."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(3, 40, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(3, 40, 2, generator=generator) * 20], dim=2)
    scores = torch.rand(3, 2, 40, generator=generator).round(decimals=1)  # ties, and scores equal to 0.25 * k
    scores[0, 0, :5] = 0.25  # exactly at the threshold: not selected
    scores[1, 1, 5:12] = float("-inf")  # dropped boxes
    selected = torch.from_numpy(onnx_nms(boxes.numpy(), scores.numpy(), 6, 0.4, score_thresh))
    expected = torch.zeros_like(scores, dtype=torch.bool)
    expected[selected[:, 0], selected[:, 1], selected[:, 2]] = True
    settings = {"max_output": 6, "iou_thresh": 0.4, "score_thresh": score_thresh}
    got = non_max_suppression(boxes, scores, **settings)
    assert torch.equal(got, expected) and len(selected) == int(got.sum()) > 10
    assert torch.equal(onnx_non_max_suppression(boxes, scores, **settings), expected)


class TopK(torch.nn.Module):
    def forward(self, scores):
        return top_k(scores, 40)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_top_k_in_onnxruntime_ranks_equal_values_as_pytorch(tmp_path):
    """The models' top-k, exported, picks and orders equal values as in PyTorch, at any length."""
    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "topk.onnx"
    torch.onnx.export(TopK(), (torch.randn(2, 50),), str(path), dynamo=False, opset_version=17, input_names=["scores"],
                      output_names=["values", "indices"], dynamic_axes={"scores": {0: "batch", 1: "n"}})  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length in (40, 300):
        scores = torch.randint(-3, 4, (3, length), generator=generator).float()
        scores[:, ::5] = float("-inf")
        values, indices = session.run(None, {"scores": scores.numpy()})
        expected_values, expected_indices = top_k(scores, 40)
        assert indices.tolist() == expected_indices.tolist()
        assert np.array_equal(values, expected_values.numpy())


class LevelPooling(torch.nn.Module):
    """:class:`MultiLevelRoIAlign` as a graph: ``(P2, P3, P4, P5, rois, image_index)`` -> pooled."""

    def __init__(self, pooler: MultiLevelRoIAlign):
        super().__init__()
        self.pooler = pooler

    def forward(self, p2, p3, p4, p5, rois, image_index):
        return self.pooler([p2, p3, p4, p5], rois, image_index)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_multi_level_roi_align_in_onnxruntime_equals_the_eager_pooler(tmp_path):
    """RoIs of every pyramid level, interleaved (and a batch with an empty level), pooled in ONNX
    Runtime equal the eager ``MultiLevelRoIAlign``'s rows, in RoI order."""
    generator = torch.Generator().manual_seed(0)
    pooler = MultiLevelRoIAlign(output_size=7, sampling_ratio=2, strides=FPN_STRIDES[:POOLED_LEVELS])
    height, width = 480, 640
    features = [torch.randn(2, 8, height // s, width // s, generator=generator) for s in FPN_STRIDES[:POOLED_LEVELS]]
    sides = torch.tensor([40.0, 460, 130, 90, 260, 200, 400, 470, 60, 150, 300, 450])  # levels 0 3 1 0 2 1 2 3 0 1 2 3
    corners = torch.rand(len(sides), 2, generator=generator) * (torch.tensor([width, height]) - sides[:, None])
    rois = torch.cat([corners, corners + sides[:, None]], dim=1)  # squares: sqrt(area) = side
    image_index = torch.tensor([0, 1] * 6)
    assert torch.bincount(pooler.levels(rois), minlength=4).tolist() == [3, 3, 3, 3]
    path = tmp_path / "pool.onnx"
    names = ["p2", "p3", "p4", "p5", "rois", "image_index"]
    dynamic = {name: {0: "rois"} for name in ("rois", "image_index")}
    torch.onnx.export(LevelPooling(pooler), (*features, rois[:5], image_index[:5]), str(path), dynamo=False,
                      opset_version=17, input_names=names, output_names=["pooled"], dynamic_axes=dynamic)  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    no_level_3 = pooler.levels(rois) != 3
    for chosen in (torch.ones(len(rois), dtype=torch.bool), no_level_3):
        feeds = dict(zip(names, [f.numpy() for f in features] + [rois[chosen].numpy(), image_index[chosen].numpy()]))
        (pooled,) = session.run(None, feeds)
        expected = pooler(features, rois[chosen], image_index[chosen])
        assert pooled.shape == tuple(expected.shape)
        assert np.allclose(pooled, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("variant", ["roi_align", "fpn"])
def test_graph_runs_the_models_own_detection(shapes_root, variant):
    """Without folding or hoisting, the graph's outputs in PyTorch are the model's padded
    detections (the export's NMS selects what the model's does)."""
    cfg = tiny_config(shapes_root, *VARIANTS[variant], "model.roi_head.score_thresh=0.0")
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=3).eval()
    graph = DetectorGraph(model, fold_norms=False, hoist=False)
    batch = shapes_batch(cfg, [1, 2])
    sizes = torch.tensor(batch.image_sizes)
    with torch.no_grad():
        expected = model.detect(batch.images, sizes)
        outputs = graph(batch.images, sizes)
    assert graph.detections_per_image == expected.boxes.shape[1] and expected.num_detections.min() > 0
    for got, want in zip(outputs, (expected.boxes, expected.scores, expected.labels, expected.num_detections)):
        assert torch.equal(got, want)


def r50_c4(shapes_root, *overrides: str):
    """A randomly initialised ResNet-50 C4 RoIAlign detector with frozen, non-trivial norms, at
    the tiny test sizes (eval mode) and its config."""
    cfg = tiny_config(shapes_root, "model.backbone.depth=50", "model.backbone.norm=frozen_bn",
                      "model.roi_head.pooler=roi_align", "model.roi_head.roi_size=8", *overrides)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=3).eval()
    randomise_norms(model)
    # The random norms make layer4's outputs large; small class weights keep the softmax away
    # from 1, where float32 scores tie and the order of tied detections is arbitrary.
    torch.nn.init.normal_(model.roi_head.score.weight, std=1e-4)
    return model, cfg


@pytest.mark.parametrize("aligned, sampling_ratio", [(False, 2), (True, 2), (False, 3)])
def test_hoisted_res5_head_equals_roi_align_then_layer4(shapes_root, aligned, sampling_ratio):
    model, _ = r50_c4(
        shapes_root, f"model.roi_head.aligned={aligned}", f"model.roi_head.sampling_ratio={sampling_ratio}"
    )
    fold_batch_norms(model)
    pooler, head = model.roi_head.box_pooler, model.roi_head.box_head
    assert can_hoist(pooler, head)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 1024, 6, 8, generator=generator)
    corners = torch.rand(12, 2, generator=generator) * torch.tensor([100.0, 80.0])
    sides = torch.rand(12, 2, generator=generator) * 40 + 1
    sides[:3] = 5.0  # narrower than one feature cell: unaligned RoIAlign widens them to one
    rois, image_index = torch.cat([corners, corners + sides], dim=1), torch.tensor([0, 1] * 6)
    with torch.no_grad():
        expected = head(pooler([features], rois, image_index))
        got = HoistedRes5Head(pooler, head)([features], rois, image_index)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_hoisting_applies_to_bottleneck_roi_align_heads_only(shapes_root):
    model, _ = r50_c4(shapes_root)
    fold_batch_norms(model)
    assert can_hoist(model.roi_head.box_pooler, model.roi_head.box_head)
    for overrides in (["model.roi_head.roi_size=7"], ["model.roi_head.pooler=roi_pool"], ["model.backbone.depth=18"]):
        other, _ = r50_c4(shapes_root, *overrides)
        fold_batch_norms(other)
        assert not can_hoist(other.roi_head.box_pooler, other.roi_head.box_head), overrides
    unfolded, _ = r50_c4(shapes_root)
    assert not can_hoist(unfolded.roi_head.box_pooler, unfolded.roi_head.box_head)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_hoisted_graph_in_onnxruntime_equals_the_eager_model(shapes_root, tmp_path):
    model, cfg = r50_c4(shapes_root)
    graph = DetectorGraph(model)
    assert graph.hoisted is not None
    trace = shapes_batch(cfg, [4, 5])
    write_onnx(graph, (trace.images, torch.tensor(trace.image_sizes)), tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = shapes_batch(cfg, [1, 2, 3])
    with torch.no_grad():
        expected = model(batch.images, batch.image_sizes)
    inputs = {"images": batch.images.numpy(), "image_sizes": np.array(batch.image_sizes, dtype=np.int64)}
    boxes, scores, labels, counts = session.run(None, inputs)
    for want, b, s, c, n in zip(expected, boxes, scores, labels, counts):
        assert n == len(want["boxes"]) > 0
        assert np.array_equal(c[:n], want["labels"].numpy())
        assert np.abs(b[:n] - want["boxes"].numpy()).max() <= 0.01
        assert np.abs(s[:n] - want["scores"].numpy()).max() <= 1e-4


def test_model_json_round_trip(exported, tmp_path):
    checkpoint, cfg, directory = exported("roi_align")
    metadata = read_metadata(directory)
    assert read_metadata(directory / "model.onnx") == metadata == read_metadata(directory / "model.json")
    assert metadata.class_names == ["circle", "square", "triangle"] and metadata.category_ids == [1, 2, 3]
    assert (metadata.preprocessing.min_size, metadata.preprocessing.max_size) == (
        cfg.dataset.test_min_size,
        cfg.dataset.max_size,
    )
    assert metadata.preprocessing.size_divisibility == cfg.dataset.size_divisibility
    assert metadata.postprocessing["score_thresh"] == cfg.model.roi_head.score_thresh
    assert metadata.config["model"]["roi_head"]["pooler"] == metadata.pooler == "roi_align"
    assert metadata.checkpoint["iteration"] == 16 and metadata.checkpoint["path"] == str(checkpoint.resolve())
    assert list(metadata.outputs) == ["boxes", "scores", "labels", "num_detections"]
    graph = onnx.load(str(directory / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == list(metadata.inputs) and [o.name for o in graph.output] == list(
        metadata.outputs
    )
    assert metadata.write(tmp_path).name == "model.json"
    assert read_metadata(tmp_path) == metadata

    data = json.loads((directory / "model.json").read_text())
    del data["preprocessing"]["mean"]
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"model.json lacks the key\(s\) preprocessing.mean"):
        read_metadata(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an frcnn export description"):
        read_metadata(tmp_path)
    with pytest.raises(FileNotFoundError, match="elsewhere/model.json not found"):
        read_metadata(tmp_path / "elsewhere" / "model.onnx")
    assert isinstance(metadata, ExportMetadata)


def test_export_errors_name_the_bad_checkpoint_or_output(exported, tmp_path):
    checkpoint, _, _ = exported("roi_align")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.pt"):
        export_checkpoint(tmp_path / "missing.pt", tmp_path / "out")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*text.pt"):
        export_checkpoint(tmp_path / "text.pt", tmp_path / "out")
    torch.save({"model": {}}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="weights.pt lacks config, class_names, category_ids"):
        export_checkpoint(tmp_path / "weights.pt", tmp_path / "out")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="output .*file is a file, not a folder"):
        export_checkpoint(checkpoint, tmp_path / "file")
    with pytest.raises(OSError, match="cannot create the output folder .*file/sub"):
        export_checkpoint(checkpoint, tmp_path / "file" / "sub")
    assert not (tmp_path / "out").exists()


def test_runtime_errors_name_the_bad_file(exported, tmp_path):
    _, _, directory = exported("roi_align")
    with pytest.raises(FileNotFoundError, match="exported model .*missing.onnx not found"):
        OnnxDetector(tmp_path / "missing.onnx")
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="model.json not found"):
        OnnxDetector(tmp_path / "model.onnx")
    (tmp_path / "model.json").write_text((directory / "model.json").read_text())
    with pytest.raises(ValueError, match="ONNX Runtime cannot load .*model.onnx"):
        OnnxDetector(tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="optimization must be one of"):
        OnnxDetector(directory / "model.onnx", optimization="max")


def compose_predict(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        return compose("predict", overrides=list(overrides))


def test_model_argument_and_runtime_checks():
    argv = ["predict.py", "runtime=onnxruntime", "model=out/model.onnx", "model.rpn.nms_thresh=0.5", "input=a"]
    assert route_model_argument(argv) == ["predict.py", "runtime=onnxruntime", "exported_model=out/model.onnx",
                                          "model.rpn.nms_thresh=0.5", "input=a"]  # fmt: skip
    # onnx=PATH: the same, the runtime implied; a runtime given on the command line is kept (and checked).
    assert route_model_argument(["predict.py", "onnx=m.onnx", "input=a"]) == [
        "predict.py", "exported_model=m.onnx", "input=a", "runtime=onnxruntime"]  # fmt: skip
    assert route_model_argument(["onnx=m.onnx", "runtime=torch"]) == ["exported_model=m.onnx", "runtime=torch"]
    # an OpenVINO IR file selects runtime=openvino, given as model= or onnx=
    for name in ("model", "onnx"):
        assert route_model_argument([f"{name}=out/model.xml"]) == ["exported_model=out/model.xml", "runtime=openvino"]
    exported_args = ["runtime=onnxruntime", "exported_model=m.onnx", "input=a", "output=b"]
    check_runtime(compose_predict(*exported_args), exported_args)
    check_runtime(compose_predict("checkpoint=c.pt", "input=a", "output=b"), [])
    cases = [
        (["exported_model=m.onnx", "input=a", "output=b"], "give it as onnx=m.onnx"),
        (["runtime=onnxruntime", "input=a", "output=b"], "needs onnx=DIR/model.onnx"),
        ([*exported_args, "checkpoint=c.pt"], "drop checkpoint="),
        ([*exported_args, "compile=true"], "compile=true compiles a checkpoint"),
        (["runtime=onnxruntime", "exported_model=m.xml", "input=a", "output=b"], "OpenVINO IR: run it with runtime="),
        (
            [*exported_args, "model.roi_head.score_thresh=0.2"],
            "score_thresh=0.2: an exported model's settings are fixed",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            check_runtime(compose_predict(*overrides), overrides)
    # The runtimes are the schema's Enum: another one is refused where the command line is composed.
    with pytest.raises(ConfigCompositionException) as info:
        compose_predict("runtime=tensorrt", "input=a", "output=b")
    assert "runtime=tensorrt" in str(info.value) and "expected one of [torch, onnxruntime, openvino]" in str(
        info.value.__cause__
    )
