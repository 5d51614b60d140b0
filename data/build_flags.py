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
    if extra and args.build != "beam":
        parser.error(f"unrecognized arguments: {' '.join(extra)} (Beam's pipeline options go with --build beam)")
    if args.build != "beam" and args.runner != "DirectRunner":
        parser.error("--runner is for --build beam")
    unknown = unknown_beam_options(extra)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (neither a flag of this command nor one of "
                     "Beam's pipeline options)")
    return Build(args.build, args.runner, tuple(extra))


def unknown_beam_options(extra: list[str]) -> list[str]:
    """The arguments Beam's own option parser leaves unparsed (it would drop
    them with a warning): options it does not define and stray words. []
    without Beam installed (the build then says how to install it)."""
    if not extra:
        return []
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        return []
    parsers = []  # Beam hands its parser, every option class's flags added, to this hook
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return parsers[0].parse_known_args(list(extra))[1]
