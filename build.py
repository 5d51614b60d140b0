"""Build a dataset's cache entry without training: the job a cluster runs
apart from training (the Beam build on Flink, Spark or Dataflow, of raw
MovieLens or of CSVs through a dataset file), or a local build ahead of time.

    python build.py --data DIR [--cache-dir DIR] [data flags] [--build beam --runner RUNNER [Beam options]]

The entry lands under --cache-dir at the key train.py computes from the same
files and data flags, so `python train.py --data DIR --cache-dir DIR ...`
then reads it without building.
"""

from __future__ import annotations

import logging
import os
import sys

from core.config import DINConfig
from core.errors import UserError, storage_error
from core.flags import Parser, add_config_flags, given
from data.build_flags import add_build_flags, build_options
from data.datasets import build_key, detect, load_splits
from data.download import default_cache_dir
from data.sources.movielens import MovieLens
from training import outputs


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 built (or already there), 2 a user's mistake (one line on stderr)."""
    parser = Parser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a dataset folder (raw MovieLens, Amazon reviews + meta; with --build beam, CSVs through a dataset file too)")
    parser.add_argument("--cache-dir", default=None,
                        help="where built datasets live (default: $DIN_CACHE_DIR or ~/.cache/din-jax)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_build_flags(parser)
    add_config_flags(parser, only=("data",), data_defaults={"raw MovieLens (sequential)": MovieLens().defaults(DINConfig())})
    args, extra = parser.parse_known_args(argv)
    build = build_options(parser, args, extra)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("din").setLevel(logging.INFO)
    try:
        config = DINConfig(**given(args))
        source = detect(args.data, config)
        if not source.built and build.engine == "local":
            raise UserError(f"--data {args.data}: {source.name} data are read as they are on every run: nothing to "
                            "build locally (--build beam builds a cache entry of them)")
        outputs.check_cache_dir("--cache-dir", args.cache_dir or default_cache_dir())
        folder = os.path.join(args.cache_dir or default_cache_dir(), "built", build_key(args.data, config))
        existed = os.path.isfile(os.path.join(folder, "encoders.json"))
        splits = load_splits(args.data, config, args.cache_dir, progress=not args.no_progress, build=build)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, an unwritable cache: one line (core/errors.py)
        found = storage_error(error)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{split} {len(getattr(splits, split)['label']):,}" for split in ("train", "valid", "test"))
    print(f"{'already built' if existed else f'built ({build.engine})'}: {folder}: {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
