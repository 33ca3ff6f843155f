"""Train a Faster R-CNN detector.

    python scripts/train.py                                  # shapes on the CPU (experiment=shapes_cpu)
    python scripts/train.py experiment=voc0712_r50_c4 dataset.root=/data/VOCdevkit
    torchrun --nproc_per_node=8 scripts/train.py experiment=coco_r50_c4 dataset.root=/data/coco
    python scripts/train.py --cfg job                        # print the resolved config and exit

Every value of configs/train.yaml (and its groups) can be overridden as ``key=value``."""

from frcnn.cli.train import command

if __name__ == "__main__":
    command()
