"""summary.csv / summary.md of a multirun folder."""

import csv
import json

from omegaconf import OmegaConf

from frcnn.engine.sweep_summary import write_summary


def make_job(sweep, name, overrides, metrics=None):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_one_row_per_job_in_job_order_with_final_metrics(tmp_path):
    metrics = {"voc07": {"mAP": 0.61234, "AP": {}}, "voc": {"mAP": 0.65, "AP": {}}, "coco": {"AP": 0.3, "AP50": 0.6}}
    make_job(tmp_path, "10", ["optimizer=adamw", "seed=1"], metrics)
    make_job(tmp_path, "2", ["optimizer=sgd", "seed=1"])
    (tmp_path / "multirun.yaml").write_text("not a job")
    rows = write_summary(tmp_path)
    assert [row["job"] for row in rows] == ["2", "10"]
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert table[0] == {"job": "2", "overrides": "optimizer=sgd seed=1", "voc07_mAP": "", "voc_mAP": "",
                        "coco_AP": "", "coco_AP50": "", "val_loss": ""}  # fmt: skip
    assert table[1]["voc07_mAP"] == "0.6123" and table[1]["coco_AP50"] == "0.6"
    markdown = (tmp_path / "summary.md").read_text().splitlines()
    assert markdown[0] == "| job | overrides | voc07_mAP | voc_mAP | coco_AP | coco_AP50 | val_loss |"
    assert markdown[3] == "| 10 | optimizer=adamw seed=1 | 0.6123 | 0.65 | 0.3 | 0.6 |  |"
