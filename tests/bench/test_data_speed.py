"""The data benchmarks run and report consistent numbers (tiny sizes)."""

import os

from frcnn.bench.data_speed import benchmark_coco_index, benchmark_data_pipeline, benchmark_indexing


def test_benchmark_coco_index_small():
    result = benchmark_coco_index(num_images=300, num_boxes=2000)
    assert result["num_images"] == 300 and result["num_boxes"] == 2000
    assert result["load_s"] > 0
    # 2000 boxes * (16 B box + 8 label + 8 object id + 2 flags) + 300 images * (8 id + 4 + 4 + 2 + 12 name + 8 offset)
    assert 2000 * 34 <= result["index_bytes"] <= 2000 * 34 + 300 * 64


def test_benchmark_data_pipeline_small(tiny_shapes_cfg):
    result = benchmark_data_pipeline(tiny_shapes_cfg(), batch_size=2, num_workers=0, num_batches=3)
    assert result["num_batches"] == 3 and result["num_workers"] == 0
    assert result["images_per_s"] > 0


def test_benchmark_indexing_small(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the benchmark's cache is its own, not this one
    result = benchmark_indexing(num_images=30)
    assert result["index_images"] == 30 and 30 <= result["index_boxes"] <= 120  # 1-4 boxes an image
    assert set(result["index_seconds"]) == {"coco", "yolo_first", "yolo_cached", "labelme_first", "labelme_cached"}
    assert all(s > 0 for s in result["index_seconds"].values())
    assert os.listdir(tmp_path) == [] and os.environ["XDG_CACHE_HOME"] == str(tmp_path)


def test_benchmark_data_pipeline_with_indexing(tiny_shapes_cfg):
    result = benchmark_data_pipeline(tiny_shapes_cfg(), batch_size=2, num_workers=0, num_batches=1, index_images=30)
    assert result["images_per_s"] > 0 and result["index_images"] == 30
    assert result["index_seconds"]["yolo_cached"] > 0
