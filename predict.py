"""Score new data with a trained run, or draw one user's attention.

    python predict.py RUN_DIR --data rows.csv [--out predictions.csv] [--attention K]
    python predict.py RUN_DIR --data DIR            # DIR's test split, the run's protocol
    python predict.py RUN_DIR --data DIR --explain USER --out user.png

A CSV holds raw rows in the run's own columns (see encoders.json; `label`
and `userId` optional). A data folder is any folder train.py reads: its
test split is built with the run's protocol and encoded with the run's
encoders. The output has one line per input row: its user and candidate
ids, `probability`, `label` when given and, with --attention K, the K most
attended history ids with their weights. AUC / GAUC / logloss are printed
when labels are present. --backend scores with the other framework (the
weights are converted).
"""

from __future__ import annotations

import argparse
import os
import sys

from core.errors import ConfigError, exit_code
from core.flags import Parser
from training import outputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--data", required=True, metavar="PATH", help="a CSV of rows, or a data folder")
    parser.add_argument("--backend", choices=("jax", "torch"), help="default: the backend that trained the run")
    parser.add_argument("--out", help="predictions CSV (default predictions.csv), or the picture with --explain")
    parser.add_argument("--attention", type=int, default=0, metavar="K", help="write the K most attended history ids")
    parser.add_argument("--batch-size", type=int, help="rows per forward pass (default: the run's eval batch size)")
    parser.add_argument("--explain", metavar="USER", help="draw USER's attention weights (needs a data folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file that predict.py wrote")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user's mistake (one line on stderr)."""
    args = parse_args(argv)
    return exit_code(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    from inference import load_run

    if args.attention < 0:
        raise ConfigError(f"--attention {args.attention}: must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
    out = (f"user-{args.explain}.png" if args.explain else "predictions.csv") if args.out is None else args.out
    outputs.check_file("--out", out, args.overwrite, protect={"--data": args.data, "RUN_DIR": args.run_dir})
    if not os.path.exists(args.data):
        raise ConfigError(f"--data {args.data}: no such file or folder")
    if args.explain is not None and not os.path.isdir(args.data):
        raise ConfigError(f"--explain needs --data to be a data folder (with the user's history), not {args.data}")
    model = load_run(args.run_dir, args.backend, args.batch_size)
    if args.explain is not None:
        from inference.explain import explain

        explain(model, args.data, args.explain, out)
        print(f"wrote {out}")
        return
    from inference.model import describe_unknown

    written, unknown, found = predictions(model, args, out)
    outputs.mark_file(out)  # what --overwrite checks before replacing it
    print(f"wrote {written} predictions to {out} ({model.backend}, weights trained by {model.trained_by})")
    print(describe_unknown(unknown))
    if found is not None:
        print(found)


CHUNK_ROWS = 1 << 16  # a CSV is scored this many rows at a time (whole batches of any power-of-two size)


def predictions(model, args: argparse.Namespace, out: str) -> tuple[int, dict[str, tuple[int, int]], str | None]:
    """Scores --data a chunk of rows at a time into `out` (whole, or not at all);
    returns (rows written, unknown ids per feature, the metrics line when the
    rows hold labels)."""
    import numpy as np
    from tqdm import tqdm

    from data.csv_files import read_csv_chunks
    from data.schema import LABEL
    from inference.score import score
    from training import metrics
    from training.run_dir import write_file

    if os.path.isdir(args.data):
        from data.datasets import raw_splits

        test = raw_splits(args.data, model.config)["test"]  # its label as LABEL: the rows name it as the run does
        test[model.label_column] = test.pop(LABEL)
        pieces = [(test, None)]
        source = f"{args.data} (test split)"
    else:
        pieces, source = read_csv_chunks(args.data, CHUNK_ROWS), args.data
    written, unknown, logits, labels, users = 0, {}, [], [], []
    codes: dict = {}  # each user's number: a row keeps 8 bytes for GAUC, not its id's text

    def write(tmp: str) -> None:
        nonlocal written
        with open(tmp, "w", encoding="utf-8", newline="") as f, \
                tqdm(unit="row", desc="scoring", disable=args.no_progress, delay=1.0) as bar:  # none for a quick error
            for rows, lines in pieces:
                table, piece_logits, piece_unknown = score(model, rows, source, lines, args.attention, bar)
                f.write(table.to_csv(index=False, header=written == 0, float_format="%.9g"))
                written += len(table)
                for name, (n, total) in piece_unknown.items():
                    before = unknown.get(name, (0, 0))
                    unknown[name] = (before[0] + n, before[1] + total)
                if "label" in table:
                    user = next((c for c in model.user_columns if c in table), None)
                    logits.append(piece_logits)
                    labels.append(table["label"].to_numpy())
                    # No user column: every row its own (GAUC undefined).
                    ids = table[user].to_numpy() if user else np.arange(written - len(table), written)
                    users.append(np.fromiter((codes.setdefault(i, len(codes)) for i in ids), np.int64, len(ids)))

    write_file(out, write)
    if not logits:
        return written, unknown, None
    all_users, all_labels = np.concatenate(users), np.concatenate(labels)
    found = metrics.evaluate(all_users, all_labels, np.concatenate(logits))
    return written, unknown, metrics.summary(found, all_users, all_labels)


if __name__ == "__main__":
    sys.exit(main())
