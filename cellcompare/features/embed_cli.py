"""``cellcompare embed DATASET_DIR --out OUT_DIR [--source {imagenet,ssl}] [--input {cells,image}]``.

Writes a dataset's embeddings as feature tables (``deep.embed_job.embed_dataset``): per-cell and
per-image Parquet shards with the ``Metadata_*`` columns of the CellProfiler tables, which
``features.load_table`` and pycytominer read. Torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse

from cellcompare.datasets.loader import LAYOUTS

__all__ = ["add_commands"]


def _embed(args: argparse.Namespace) -> int:
    from cellcompare.deep.embed_job import embed_dataset
    from cellcompare.features import FeatureConfig

    config = FeatureConfig.from_yaml(args.config) if args.config else None
    out = embed_dataset(args.dataset_dir, args.out, source=args.source, weights=args.weights,
                        input=args.input, cells_per_image=args.cells_per_image,
                        image_size=args.image_size, arch=args.arch, feature_config=config,
                        dataset_options={"layout": args.layout}, seed=args.seed)
    print(out)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``embed`` to the ``cellcompare`` command line."""
    emb = sub.add_parser("embed", help="write a network's embeddings as feature tables")
    emb.add_argument("dataset_dir", help="dataset folder (any layout open_dataset reads)")
    emb.add_argument("--out", required=True, help="output folder (image/, cells/, embedding.json)")
    emb.add_argument("--source", default="imagenet", choices=["imagenet", "ssl"],
                     help="ResNet18 with ImageNet weights, or self-supervised on this dataset")
    emb.add_argument("--weights", default="imagenet",
                     help="--source imagenet: 'imagenet' (torch hub cache) or resnet18-<sha256 prefix>.pth")
    emb.add_argument("--arch", default="resnet18", choices=["resnet18", "smallcnn"],
                     help="--source ssl: the backbone pretrained")
    emb.add_argument("--input", default="cells", choices=["cells", "image"],
                     help="embed cell crops (image rows are their means) or whole images")
    emb.add_argument("--cells-per-image", type=int, default=16, help="cells embedded per image (seeded)")
    emb.add_argument("--image-size", type=int, default=None,
                     help="input side (default: the crop size, or 224 for whole images)")
    emb.add_argument("--config", default=None, help="YAML file of FeatureConfig fields (segmentation)")
    emb.add_argument("--layout", default="auto", choices=LAYOUTS, help="dataset layout")
    emb.add_argument("--seed", type=int, default=0, help="choice of cells, SSL pretraining")
    emb.set_defaults(func=_embed, log_level_default="INFO")
