"""Train and evaluate DIN with either backend.

    python train.py --backend jax --data DIR --epochs N --batch-size B --seed S --out RUN_DIR

DIR is any supported folder (data/datasets.py: your CSVs with a dataset
file, the tutorial's split, raw MovieLens, Amazon reviews + meta). Without
--data, MovieLens-1M is downloaded from GroupLens (once, verified).

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
from data.datasets import detect, load_splits
from data.download import ML_1M, default_cache_dir, fetch
from data.errors import ConfigError, UserError
from training import checkpoint, fit, make_backend
from training import outputs

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
    "dataset": str,
    "attention_norm": str,
    "dice": str,
    "init": str,
    "mba_reg": float,
    "dtype": str,
}
SWITCHES = ("valid_on_test", "share_embeddings", "mask_padding")  # on/off DINConfig fields
HELP = {
    "attention_norm": "softmax: masked softmax over the history (the paper) instead of the tutorial's scaled sigmoid",
    "dice": "paper: Dice's BatchNorm has no affine parameters",
    "init": "paper: embeddings N(0, 1e-4^2) and zero Linear biases instead of the tutorial's N(0, 1)",
    "mba_reg": "lambda of the paper's mini-batch aware L2 on embedding tables (eq. 4-7); 0 = off",
    "dtype": "the computation's dtype; bfloat16 (JAX) keeps parameters, optimiser state, BatchNorm statistics "
    "and the loss in float32",
    "max_len": "cut the CSV sources' sequences to N ids (0: the longest training sequence)",
    "dataset": "a dataset file (TOML) describing the CSVs in --data (default: DIR/dataset.toml when present)",
    "protocol": "how raw MovieLens becomes samples: sequential, seed (the tutorial's) or paper (the DIN paper's)",
    "max_hist": "raw MovieLens and Amazon: a history keeps the user's latest N items",
    "valid_on_test": "early-stop on the test set, as the tutorial did (for comparison only)",
    "share_embeddings": "one vocabulary and embedding table for each attention pair's query and history (the paper's design)",
    "mask_padding": "max-pooling and the attention's BatchNorm/Dice statistics ignore padded positions",
}
# Placement and checkpointing, DINConfig fields too (README: Scaling out).
SCALE_FLAGS = {
    "mesh": (str, "jax device mesh data=N[,model=M] (default: every device on data); batches split over data"),
    "checkpoint_every": (int, "write the full training state every STEPS optimiser steps into RUN_DIR/checkpoints (0: never)"),
    "steps_per_call": (int, "jax: optimiser steps per jitted call"),
    "param_dtype": (str, "parameters' and optimiser state's dtype (float64: jax with JAX_ENABLE_X64=1)"),
    "device": (str, "torch device, e.g. cpu or cuda (default: cuda when available)"),
    "input": (str, "jax: device copies each split to every device once; stream gathers each block of batches on the "
              "host (memory-mapped cache) and sends each device only its shard; auto streams splits over 1 GB"),
}
# With --resume every setting comes from RUN_DIR/config.json; only these may change.
RESUME_MAY_CHANGE = ("mesh", "device", "input")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Config flags are in the namespace only when given (their defaults are DINConfig's)."""
    defaults = DINConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=("jax", "torch"), default=None,
                        help="required for a new run; --resume takes the checkpoint's")
    parser.add_argument(
        "--data", default=None,
        help="a folder, its source detected from its files: CSVs with a dataset.toml (or --dataset), the tutorial's "
        "split (train.csv, test.csv), raw MovieLens (MovieLens-1M .dat files, or ratings.csv + movies.csv as in "
        "ml-latest-small), or Amazon reviews + meta (2014 release); "
        "default: MovieLens-1M, downloaded once into --cache-dir and verified",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="downloads and built raw datasets (default: $DIN_CACHE_DIR or ~/.cache/din-jax)"
    )
    parser.add_argument("--out", default=None, help="run directory to write: a new or empty folder (required unless --resume)")
    parser.add_argument("--overwrite", action="store_true", default=False,
                        help="replace the run in --out (a folder of train.py's own) once the new run finishes")
    for field, kind in CONFIG_FLAGS.items():
        parser.add_argument(
            f"--{field.replace('_', '-')}", type=kind, choices=CHOICES.get(field),
            help=f"{HELP.get(field, '')} (default {getattr(defaults, field)})".strip(),
        )
    for field in SWITCHES:
        parser.add_argument(f"--{field.replace('_', '-')}", action="store_true", help=HELP[field])
    scale = parser.add_argument_group("scaling out and checkpoints (README: Scaling out)")
    for field, (kind, text) in SCALE_FLAGS.items():
        scale.add_argument(f"--{field.replace('_', '-')}", type=kind, choices=CHOICES.get(field),
                           metavar="STEPS" if field == "checkpoint_every" else None, help=text)
    scale.add_argument(
        "--shard-embeddings", action="store_true", help="jax: split embedding tables along the vocabulary over model"
    )
    scale.add_argument(
        "--distributed", action="store_true", default=False,
        help="jax multi-host: jax.distributed.initialize() (TPU/SLURM/MPI environments, or JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID)",
    )
    scale.add_argument(
        "--resume", metavar="RUN_DIR", default=None,
        help="continue RUN_DIR from its newest checkpoint with every setting of its config.json; only --data "
        "(the same data elsewhere), --mesh, --device and --input may be given",
    )
    parser.add_argument("--no-progress", action="store_true", default=False, help="hide the progress bars")
    args = parser.parse_args(argv)
    given = settings(args)
    if args.resume:
        fixed = sorted(f"--{name.replace('_', '-')}" for name in given if name not in RESUME_MAY_CHANGE)
        if fixed or args.out:
            parser.error(f"--resume takes every setting from {args.resume}/config.json: drop {', '.join(fixed or ['--out'])}")
    elif args.out is None or not args.backend:
        parser.error("--backend and --out are required (or --resume RUN_DIR)")
    if args.backend == "torch" and ({"mesh", "shard_embeddings", "steps_per_call", "input"} & set(given) or args.distributed):
        parser.error("--mesh, --shard-embeddings, --steps-per-call, --input and --distributed are for --backend jax")
    return args


def settings(args: argparse.Namespace) -> dict:
    """The DINConfig fields given on the command line."""
    fields = {f.name for f in dataclasses.fields(DINConfig)}
    return {name: value for name, value in vars(args).items() if name in fields}


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user's mistake (one line on stderr), 130 interrupted."""
    args = parse_args(argv)
    try:
        run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = args.resume or getattr(args, "written", None) or args.out
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
        config, data_dir, backend = resume_setup(args.resume)
        if args.backend and args.backend != backend:
            raise ConfigError(f"--resume {args.resume}: its checkpoints were written by the {backend} backend, "
                              f"not {args.backend}: resume with --backend {backend}, or without --backend")
        config = config.replace(**settings(args))  # --mesh, --device, --input: where to compute
        data_dir = args.data or data_dir
        args.backend = backend
    else:
        given = settings(args)
        if given.get("dataset"):  # recorded whole in config.json, so the run can be rebuilt from anywhere
            given["dataset"] = os.path.abspath(given["dataset"])
        config = DINConfig(**given)
        data_dir = args.data
        if data_dir is not None:
            detect(data_dir, config)  # the folder and its dataset file are readable: checked before --out is touched
        replace = outputs.check_folder("--out", args.out, args.overwrite, "run", hint=", or --resume it",
                                       protect={"--data": data_dir, "--dataset": config.dataset or None,
                                                "the cache": args.cache_dir or default_cache_dir()})
        if replace:  # the old run stays whole until the new one has finished
            args.written = outputs.staged(args.out)
            logging.getLogger("din").info("training into %s: it replaces %s when the run finishes", args.written, args.out)
    data_dir = data_dir or fetch(ML_1M, args.cache_dir, progress=not args.no_progress)
    splits = load_splits(data_dir, config, args.cache_dir, progress=not args.no_progress)
    backend = make_backend(args.backend, splits.encoders.schema(), config, splits.train)
    out = args.resume or getattr(args, "written", None) or args.out
    fit(backend, splits, config, out, progress=not args.no_progress, data_dir=data_dir, resume=bool(args.resume))
    if out != (args.resume or args.out) and backend.primary:
        outputs.swap_in(out, args.out)


def resume_setup(run: str) -> tuple[DINConfig, str | None, str]:
    """The config, data folder and backend of a run directory that holds a checkpoint."""
    _, loop = checkpoint.newest(run)
    path = os.path.join(run, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return DINConfig.from_json(f.read(), path), loop.data, loop.backend
    except OSError as error:
        raise ConfigError(f"{path}: unreadable ({error.strerror})") from None


if __name__ == "__main__":
    sys.exit(main())
