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
import os
import sys

from data.config import CHOICES, DINConfig
from data.datasets import load_splits
from data.download import ML_1M, fetch
from data.errors import ConfigError, UserError
from training import checkpoint, fit, make_backend
from training.run_dir import prepare_out

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
    "max_len": int,
    "max_hist": int,
    "holdout_fraction": float,
    "split": str,
    "protocol": str,
    "attention_norm": str,
    "dice": str,
    "init": str,
    "mba_reg": float,
    "dtype": str,
}
HELP = {
    "attention_norm": "softmax: masked softmax over the history (the paper) instead of the tutorial's scaled sigmoid",
    "dice": "paper: Dice's BatchNorm has no affine parameters",
    "init": "paper: embeddings N(0, 1e-4^2) and zero Linear biases instead of the tutorial's N(0, 1)",
    "mba_reg": "lambda of the paper's mini-batch aware L2 on embedding tables (eq. 4-7); 0 = off",
    "dtype": "activations' dtype; bfloat16 (JAX) keeps parameters, optimiser state, BatchNorm statistics "
    "and the loss in float32",
    "max_len": "cut the tutorial CSVs' sequences to N ids (0: the longest training sequence)",
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
    parser.add_argument("--out", help="run directory to write: a new or empty folder (required unless --resume)")
    parser.add_argument("--overwrite", action="store_true", help="empty a non-empty --out folder first")
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
    scale = parser.add_argument_group("scaling out (README: Scaling out)")
    scale.add_argument(
        "--mesh", help="jax device mesh data=N[,model=M] (default: every device on data); batches split over data"
    )
    scale.add_argument(
        "--shard-embeddings", action="store_true", help="jax: split embedding tables along the vocabulary over model"
    )
    scale.add_argument(
        "--distributed", action="store_true",
        help="jax multi-host: jax.distributed.initialize() (TPU/SLURM/MPI environments, or JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID)",
    )
    scale.add_argument(
        "--checkpoint-every", type=int, default=0, metavar="STEPS",
        help="write the full training state every STEPS optimiser steps into RUN_DIR/checkpoints (0: never)",
    )
    scale.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue RUN_DIR from its newest checkpoint, with its config.json (flags other than "
        "--backend, --data, --mesh, --checkpoint-every and --no-progress are ignored)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    if not args.out and not args.resume:
        parser.error("--out is required (or --resume RUN_DIR)")
    if args.checkpoint_every < 0:
        parser.error("--checkpoint-every must be >= 0")
    if args.backend == "torch" and (args.mesh or args.shard_embeddings or args.distributed):
        parser.error("--mesh, --shard-embeddings and --distributed are for --backend jax")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user's mistake (one line on stderr), 130 interrupted."""
    args = parse_args(argv)
    try:
        run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = args.resume or args.out
        newest = checkpoint.latest(out) if out else None
        where = f"; the newest whole checkpoint is {newest}: --resume {out} continues" if newest else ""
        print(f"interrupted: {out} is unfinished (marked by its UNFINISHED file){where}", file=sys.stderr)
        return 130
    return 0


def run(args: argparse.Namespace) -> None:
    # The run's own log at INFO; libraries' INFO chatter (JAX's probe for a TPU
    # on every start, orbax's per-checkpoint lines) stays out, their warnings not.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("din").setLevel(logging.INFO)
    if args.distributed:
        from din_jax.mesh import initialize_distributed

        initialize_distributed()  # before any other JAX call
    if args.resume:
        config, data_dir = resume_setup(args.resume)
        data_dir = args.data or data_dir
    else:
        config = DINConfig(
            **{field: getattr(args, field) for field in CONFIG_FLAGS},
            valid_on_test=args.valid_on_test,
            share_embeddings=args.share_embeddings,
            mask_padding=args.mask_padding,
        )
        data_dir = args.data
        prepare_out(args.out, args.overwrite)  # before anything is read or written
    data_dir = data_dir or fetch(ML_1M, args.cache_dir, progress=not args.no_progress)
    splits = load_splits(data_dir, config, args.cache_dir)
    backend = make_backend(
        args.backend, splits.encoders.schema(), config, splits.train, args.mesh, args.shard_embeddings
    )
    fit(
        backend, splits, config, args.resume or args.out, progress=not args.no_progress, data_dir=data_dir,
        checkpoint_every=args.checkpoint_every, resume=bool(args.resume),
    )


def resume_setup(run: str) -> tuple[DINConfig, str | None]:
    """The config and data folder of a run directory that holds a checkpoint."""
    _, loop = checkpoint.newest(run)
    path = os.path.join(run, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return DINConfig.from_json(f.read(), path), loop.data
    except OSError as error:
        raise ConfigError(f"{path}: unreadable ({error.strerror})") from None


if __name__ == "__main__":
    sys.exit(main())
