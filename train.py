"""Train and evaluate DIN on MovieLens with either backend.

    python train.py --backend jax --data DIR --epochs N --batch-size B --seed S --out RUN_DIR

Without --data, MovieLens-1M is downloaded from GroupLens (once, verified).

Flags fill a DINConfig; the shared loop in `training/loop.py` does the rest.
Only the chosen framework is imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from data.config import CHOICES, DINConfig
from data.datasets import load_splits
from data.download import ML_1M, DownloadError, fetch
from data.movielens import DataError
from training import fit, make_backend

# Flags that map one-to-one onto DINConfig fields; their defaults come from it.
CONFIG_FLAGS = {
    "epochs": int,
    "batch_size": int,
    "eval_batch_size": int,
    "seed": int,
    "patience": int,
    "learning_rate": float,
    "weight_decay": float,
    "embedding_dim": int,
    "valid_fraction": float,
    "min_count": int,
    "max_hist": int,
    "holdout_fraction": float,
    "split": str,
    "protocol": str,
    "attention_norm": str,
    "dice": str,
    "init": str,
    "mba_reg": float,
}
HELP = {
    "attention_norm": "softmax: masked softmax over the history (the paper) instead of the tutorial's scaled sigmoid",
    "dice": "paper: Dice's BatchNorm has no affine parameters",
    "init": "paper: embeddings N(0, 1e-4^2) and zero Linear biases instead of the tutorial's N(0, 1)",
    "mba_reg": "lambda of the paper's mini-batch aware L2 on embedding tables (eq. 4-7); 0 = off",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = DINConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("jax", "torch"), required=True)
    parser.add_argument(
        "--data",
        help="the tutorial's split (train.csv, test.csv) or a raw GroupLens folder (MovieLens-1M .dat files, "
        "or ratings.csv + movies.csv as in ml-latest-small), detected from the files; "
        "default: MovieLens-1M, downloaded once into --cache-dir and verified",
    )
    parser.add_argument(
        "--cache-dir", help="downloads and built raw datasets (default: $DIN_CACHE_DIR or ~/.cache/din-jax)"
    )
    parser.add_argument("--out", required=True, help="run directory to write")
    for field, kind in CONFIG_FLAGS.items():
        parser.add_argument(
            f"--{field.replace('_', '-')}", type=kind, default=getattr(defaults, field), choices=CHOICES.get(field),
            help=HELP.get(field),
        )
    parser.add_argument(
        "--valid-on-test", action="store_true", help="early-stop on the test set, as the tutorial did (for comparison only)"
    )
    parser.add_argument(
        "--share-embeddings", action="store_true",
        help="one vocabulary and embedding table for each attention pair's query and history (the paper's design)",
    )
    parser.add_argument(
        "--mask-padding", action="store_true",
        help="max-pooling and the attention's BatchNorm/Dice statistics ignore padded positions",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = DINConfig(
        **{field: getattr(args, field) for field in CONFIG_FLAGS},
        valid_on_test=args.valid_on_test,
        share_embeddings=args.share_embeddings,
        mask_padding=args.mask_padding,
    )
    try:
        data_dir = args.data or fetch(ML_1M, args.cache_dir, progress=not args.no_progress)
        splits = load_splits(data_dir, config, args.cache_dir)
    except (DataError, DownloadError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backend = make_backend(args.backend, splits.encoders.schema(), config, splits.train)
    fit(backend, splits, config, args.out, progress=not args.no_progress, data_dir=data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
