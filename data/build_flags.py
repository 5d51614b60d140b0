"""The flags that say how a raw dataset's cache entry is built (train.py and
build.py share them): --build local|beam, --runner, and Beam's own pipeline
options after them."""

from __future__ import annotations

import argparse

from data.datasets import Build

BUILDS = ("local", "beam")
# Beam's runners by the names its --runner takes (apache_beam.runners.create_runner).
RUNNERS = ("DirectRunner", "PrismRunner", "FlinkRunner", "SparkRunner", "PortableRunner", "DataflowRunner")


def add_build_flags(parser: argparse.ArgumentParser) -> None:
    """How a raw dataset's cache entry is built (the entry is the same either way)."""
    group = parser.add_argument_group("build: how raw data become the cached samples (docs/data.md)")
    group.add_argument("--build", choices=BUILDS, default="local",
                       help="local: one process, chunk by chunk; beam: an Apache Beam pipeline (pip install -e '.[beam]'), "
                       "for data beyond one machine; Beam's own pipeline options (--project=..., --flink_master=..., "
                       "--direct_num_workers=...) may follow")
    group.add_argument("--runner", default="DirectRunner", choices=RUNNERS, metavar="RUNNER",
                       help="--build beam: DirectRunner (this machine), FlinkRunner, SparkRunner or DataflowRunner "
                       "(default DirectRunner)")


def build_options(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]):
    """The data layer's Build from --build, --runner and the arguments argparse
    left (Beam's pipeline options, only with --build beam)."""
    if extra and args.build != "beam":  # with --build beam, Beam parses them (and warns of any it does not know)
        parser.error(f"unrecognized arguments: {' '.join(extra)} (Beam's pipeline options go with --build beam)")
    if args.build != "beam" and args.runner != "DirectRunner":
        parser.error("--runner is for --build beam")
    return Build(args.build, args.runner, tuple(extra))
