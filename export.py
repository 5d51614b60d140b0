"""Export a trained run for serving.

    python export.py RUN_DIR --format stablehlo|torch|onnx --out DIR [--overwrite]

stablehlo: jax.export of the eval-mode forward, the batch dimension symbolic,
lowered for cpu, cuda and tpu in one artifact; calling it needs jax only.
torch: torch.export with a dynamic batch dimension, saved as .pt2.
onnx: torch.onnx.export (dynamo exporter), runs in onnxruntime.
DIR also holds manifest.json (inputs, dtypes, shapes, outputs) and the run's
encoders.json. Either backend's run exports to every format.
"""

from __future__ import annotations

import argparse
import sys

from core.errors import exit_code
from core.flags import Parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="export.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--format", required=True, choices=("stablehlo", "torch", "onnx"))  # training.backend.EXPORTS
    parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    parser.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user's mistake (one line on stderr)."""
    args = parse_args(argv)
    return exit_code(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    from inference.export import export_run

    found = export_run(args.run_dir, args.format, args.out, args.overwrite)
    inputs = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in found["inputs"])
    print(f"wrote {args.out}/{found['artifact']} ({args.format}): inputs {inputs} -> probability [batch]")


if __name__ == "__main__":
    sys.exit(main())
