"""export_checkpoint's formats and precisions: OpenVINO IR, int8 for both runtimes with the accuracy
gate (tested both ways), the staging that leaves nothing behind, overwrite, and model.json's keys."""

import json
import os

import pytest
import torch

from frcnn.export import export_checkpoint, quantize, read_metadata
from frcnn.export import exporter as exporter_module
from frcnn.export.runtime import OnnxDetector, load_exported
from frcnn.inference import Detector
from tests.export.test_exporter import assert_same_detection_sets
from tests.helpers.checkpoints import shapes_batch


@pytest.fixture(scope="module")
def trained(exported):
    """(checkpoint, train config, ONNX export folder) of the tiny RoIAlign model."""
    return exported("roi_align")


def test_openvino_export_runs_as_the_onnx_one(trained, tmp_path):
    checkpoint, cfg, onnx_dir = trained
    metadata = export_checkpoint(checkpoint, tmp_path / "ov", format="openvino")
    assert sorted(os.listdir(tmp_path / "ov")) == ["model.bin", "model.json", "model.xml"]
    assert metadata.openvino_file == "model.xml" and metadata.onnx_file is None and metadata.precision == "fp32"
    assert read_metadata(tmp_path / "ov" / "model.xml").model_file == "model.xml"
    batch = shapes_batch(cfg, [1, 2, 3])
    expected = OnnxDetector(onnx_dir / "model.onnx")(batch.images, batch.image_sizes)
    got = load_exported(tmp_path / "ov" / "model.xml")(batch.images, batch.image_sizes)
    assert any(len(e["boxes"]) for e in expected)
    assert_same_detection_sets(expected, got)
    # the Python API runs it too, with the export's own preprocessing
    detector = Detector.from_exported(tmp_path / "ov" / "model.xml", threads=1)
    assert type(detector.model).__name__ == "OpenVinoDetector" and detector.class_names == metadata.class_names


@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_int8_export_records_both_maps(trained, tmp_path, format):
    checkpoint, cfg, _ = trained
    metadata = export_checkpoint(checkpoint, tmp_path / "q", format=format, precision="int8",
                                 calibration_images=4, max_map_drop=1.0, threads=1)  # fmt: skip
    written = json.loads((tmp_path / "q" / "model.json").read_text())
    quantization = written["quantization"]
    assert written["precision"] == "int8" and metadata.quantization == quantization
    assert set(quantization) == {"precision", "map_fp32", "map_int8", "drop", "calibration_images"}
    assert quantization["drop"] == pytest.approx(quantization["map_fp32"] - quantization["map_int8"])
    assert quantization["calibration_images"] == 4
    assert not [name for name in os.listdir(tmp_path / "q") if name.startswith((".export-", "int8"))]
    model_file = tmp_path / "q" / metadata.model_file
    if format == "onnx":  # QDQ nodes around the quantised layers, the box regressors left in fp32
        import onnx

        graph = onnx.load(str(model_file)).graph
        ops = {node.op_type for node in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert quantize.fp32_nodes(model_file), "the regressors are found by name"
    batch = shapes_batch(cfg, [1, 2])
    results = load_exported(model_file, threads=1)(batch.images, batch.image_sizes)
    assert len(results) == 2 and all(torch.isfinite(r["boxes"]).all() for r in results)


def test_int8_beyond_the_allowed_drop_is_refused_and_writes_nothing(trained, tmp_path, monkeypatch):
    checkpoint, _, _ = trained
    maps = iter([0.80, 0.70])  # fp32, then int8
    monkeypatch.setattr(quantize, "test_map", lambda detector, dataset_cfg: next(maps))
    with pytest.raises(ValueError, match=r"int8 loses 0\.1000 VOC07 mAP .* max_map_drop=0\.05: nothing exported"):
        export_checkpoint(checkpoint, tmp_path / "q", precision="int8", calibration_images=2, max_map_drop=0.05)
    assert not (tmp_path / "q").exists()
    # within the allowed drop it is exported
    maps = iter([0.80, 0.78])
    metadata = export_checkpoint(checkpoint, tmp_path / "q", precision="int8", calibration_images=2, max_map_drop=0.05)
    assert metadata.quantization["drop"] == pytest.approx(0.02)


def test_check_accuracy_names_the_drop():
    entry = quantize.check_accuracy(0.9, 0.895, 0.01, 300)
    assert entry == {"precision": "int8", "map_fp32": 0.9, "map_int8": 0.895, "drop": pytest.approx(0.005),
                     "calibration_images": 300}  # fmt: skip
    with pytest.raises(ValueError, match="0.0200 VOC07 mAP"):
        quantize.check_accuracy(0.9, 0.88, 0.01, 300)


def test_a_failed_export_leaves_nothing_and_a_used_folder_needs_overwrite(trained, tmp_path, monkeypatch):
    checkpoint, _, _ = trained

    def cannot_run(detector, preprocessing):
        raise ValueError("ONNX Runtime loads model.onnx but cannot run it: boom")

    monkeypatch.setattr(exporter_module, "_check_runs", cannot_run)
    with pytest.raises(ValueError, match="cannot run it"):
        export_checkpoint(checkpoint, tmp_path / "new")
    assert not (tmp_path / "new").exists()  # created by the export: removed
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="cannot run it"):
        export_checkpoint(checkpoint, used, overwrite=True)
    assert os.listdir(used) == ["notes.txt"]  # no staging folder, no model file left
    monkeypatch.undo()

    with pytest.raises(ValueError, match=r"already holds notes\.txt: .* overwrite=true"):
        export_checkpoint(checkpoint, used)
    export_checkpoint(checkpoint, used, overwrite=True)
    assert sorted(os.listdir(used)) == ["model.json", "model.onnx", "notes.txt"]


def test_model_json_without_the_newer_keys_reads_as_fp32_onnx(trained, tmp_path):
    _, _, onnx_dir = trained
    data = json.loads((onnx_dir / "model.json").read_text())
    for key in ("precision", "openvino_file", "quantization"):
        data.pop(key)
    (tmp_path / "model.json").write_text(json.dumps(data))
    metadata = read_metadata(tmp_path)
    assert metadata.precision == "fp32" and metadata.model_file == "model.onnx" and metadata.quantization is None


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_threads_reach_the_runtime(trained, runtime):
    from frcnn.cli.runtime_option import inference_model
    from frcnn.utils.settings import typed
    from tests.helpers.configs import compose_config

    _, _, onnx_dir = trained
    overrides = [f"runtime={runtime}", f"exported_model={onnx_dir / 'model.onnx'}", "input=a", "output=b", "threads=1"]
    model = inference_model(typed(compose_config("predict", *overrides)), overrides).model
    if runtime == "onnxruntime":
        assert model.session.get_session_options().intra_op_num_threads == 1
    else:
        assert model.compiled.get_property("INFERENCE_NUM_THREADS") == 1
