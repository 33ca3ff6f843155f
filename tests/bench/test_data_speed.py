"""The data benchmarks run and report consistent numbers (tiny sizes)."""

from frcnn.bench.data_speed import benchmark_coco_index, benchmark_data_pipeline


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
