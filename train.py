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
import contextlib
import logging
import os
import sys

from core.config import CHANGE_ON_RESUME, DINConfig
from core.errors import ConfigError, DataError, exit_code
from core.flags import Parser, add_config_flags, flag, given
from data.build_flags import add_build_flags, build_options
from data.datasets import detect, load_splits
from data.sources.movielens import MovieLens
from data.download import ML_1M, default_cache_dir, fetch
from training import checkpoint, continual, fit, make_backend, outputs, run_dir
from training.backend import BACKENDS, backend_module, check, derived
from training.resolve import resolve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The run's own flags, then one per DINConfig field (core/flags.py); a
    config flag is in the namespace only when given."""
    parser = Parser(prog="train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default=None,
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (a folder of train.py's own) once the new run finishes")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", default=None,
        help="continue RUN_DIR from its newest checkpoint with every setting of its config.json; only --data "
        f"(the same data elsewhere), {', '.join(sorted(map(flag, CHANGE_ON_RESUME)))} may be given",
    )
    parser.add_argument(
        "--continue-from", metavar="RUN", default=None,
        help="start from the finished run RUN on newer --data: its data and model settings, best weights and Adam "
        "state, its vocabularies grown by the new training ids (RUN is only read); training flags may change")
    parser.add_argument("--continue-on", choices=continual.ON, default="new",
                        help="--continue-from: new (default): the training samples later than RUN's last; all: every one")
    parser.add_argument(
        "--distributed", action="store_true",
        help="jax multi-host: jax.distributed.initialize() (TPU/SLURM/MPI environments, or JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_build_flags(parser)
    add_config_flags(parser, data_defaults={"raw MovieLens (sequential)": MovieLens().defaults(DINConfig())})
    args, extra = parser.parse_known_args(argv)
    args.build = build_options(parser, args, extra)
    settings = given(args, preset=False)
    if args.continue_from and (args.resume or args.data is None):
        parser.error("--continue-from RUN trains a new run on --data: give --data and --out, without --resume")
    if args.continue_on != "new" and not args.continue_from:
        parser.error("--continue-on is for --continue-from RUN")
    if args.resume:
        fixed = sorted(flag(name) for name in settings if name not in CHANGE_ON_RESUME)
        fixed += ["--preset"] if getattr(args, "preset", None) else []
        if fixed or args.out:
            parser.error(f"--resume takes every setting from {args.resume}/config.json: drop {', '.join(fixed or ['--out'])}")
    elif args.out is None or not (args.backend or args.continue_from):
        parser.error("--backend and --out are required (or --resume RUN_DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user's mistake (one line on stderr), 130 interrupted."""
    args = parse_args(argv)
    try:
        return exit_code(lambda: run(args))
    except KeyboardInterrupt:
        out = args.resume or getattr(args, "written", None) or args.out
        newest = checkpoint.latest(out) if out else None
        where = f"; the newest whole checkpoint is {newest}: --resume {out} continues" if newest else ""
        print(f"interrupted: {out} is unfinished (marked by its UNFINISHED file){where}", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> None:
    # The run's own log at INFO; libraries' INFO chatter (JAX's probe for a TPU
    # on every start, orbax's per-checkpoint lines) stays out, their warnings not.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("din").setLevel(logging.INFO)
    # One writer per run folder (a multi-host job's processes share it: its
    # coordinator sees to that); a resume takes it before it reads its checkpoints.
    with contextlib.ExitStack() as writing:
        if args.resume:
            if not os.path.isdir(args.resume):
                raise ConfigError(f"--resume {args.resume}: no such folder (give the --out folder of the run to continue)")
            if not args.distributed:
                writing.enter_context(outputs.locked(args.resume, "--resume"))
            config, data_dir, settings, replace = *resumed(args), None, False
        else:
            config, data_dir, settings, replace = new_run(args)
            if not args.distributed:
                writing.enter_context(outputs.locked(args.out, "--out"))
        train(args, config, data_dir, settings, replace)


def resumed(args: argparse.Namespace) -> tuple[DINConfig, str | None]:
    """The resumed run's config (with where to compute, as given) and data folder."""
    config, data_dir, backend = resume_setup(args.resume)
    if args.backend and args.backend != backend:
        raise ConfigError(f"--resume {args.resume}: its checkpoints were written by the {backend} backend, "
                          f"not {args.backend}: resume with --backend {backend}, or without --backend")
    config = config.replace(**given(args))  # --mesh, --device, --input: where to compute
    args.backend = backend
    check(backend, config)
    distribute(args)
    return config, args.data or data_dir


def new_run(args: argparse.Namespace) -> tuple[DINConfig, str | None, dict, bool]:
    """(the flags' config, the data folder, the settings given, whether --out is replaced):
    every check that reads, before anything is written."""
    settings = given(args)
    if settings.get("dataset"):  # recorded whole in config.json, so the run can be rebuilt from anywhere
        settings["dataset"] = os.path.abspath(settings["dataset"])
    if args.continue_from:  # RUN's data and model settings, the training ones given
        args.parent = continual.Parent.read(args.continue_from)
        config, args.after = continual.settings(args.parent, settings, args.continue_on, args.backend)
        args.backend = args.parent.backend
    else:
        config = DINConfig(**settings)
    check(args.backend, config)  # settings the backend cannot run, before anything is read or written
    distribute(args)
    if args.data is not None:  # the folder and its dataset file are read before --out is touched
        try:
            detect(args.data, config)
        except DataError as error:
            if not args.continue_from:
                raise
            raise DataError(f"--continue-from {args.continue_from}: {args.data} is not data the run can continue on, "
                            f"which must be of its source and format ({error})") from None
    outputs.check_cache_dir("--cache-dir", args.cache_dir or default_cache_dir())
    replace = outputs.check_folder("--out", args.out, args.overwrite, "run", hint=", or --resume it",
                                   protect={"--data": args.data, "--dataset": config.dataset or None,
                                            "the cache": args.cache_dir or default_cache_dir(),
                                            "--continue-from": args.continue_from})
    return config, args.data, settings, replace


def train(args: argparse.Namespace, config: DINConfig, data_dir: str | None, settings: dict, replace: bool) -> None:
    """Resolves the run's defaults (a new run), loads the data and trains into --out (or the resumed run)."""
    if data_dir is None:  # MovieLens-1M, downloaded once
        data_dir = fetch(ML_1M, args.cache_dir, progress=not args.no_progress)

    def load(config: DINConfig):
        return load_splits(data_dir, config, args.cache_dir, progress=not args.no_progress, build=args.build)

    parent = getattr(args, "parent", None)
    record = continual.read_record(args.resume) if args.resume else parent and parent.record(args.continue_on, args.after)
    if args.resume and record:  # a continued run: its own (grown) encoders, its training samples
        splits = continual.splits(data_dir, config, record["trained_after"],
                                  encoders=run_dir.read_encoders(args.resume))
    elif args.resume:  # every setting from its config.json
        splits = load(config)
    elif parent:  # RUN's settings; the schedule's length from the new training split
        splits = continual.splits(data_dir, config, args.after, parent)
        config = derived(args.backend, config, splits.encoders.schema(), splits.train)
    else:  # every default applied here, recorded in config.json
        config, splits = resolve(args.backend, data_dir, config, settings, load)
    if replace:  # the old run stays whole until the new one has finished
        args.written = outputs.staged(args.out)
        logging.getLogger("din").info("training into %s: it replaces %s when the run finishes", args.written, args.out)
    backend = make_backend(args.backend, splits.encoders.schema(), config, splits.train)
    if parent:
        continual.start_from(backend, parent)
    out = args.resume or getattr(args, "written", None) or args.out
    fit(backend, splits, config, out, progress=not args.no_progress, data_dir=data_dir, resume=bool(args.resume),
        parent=record)
    if out != (args.resume or args.out) and backend.primary:
        outputs.swap_in(out, args.out)


def distribute(args: argparse.Namespace) -> None:
    """--distributed: joins the multi-host job before any other JAX call."""
    if args.distributed:
        backend_module(args.backend).initialize_distributed()


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
