"""Command-line flags made from DINConfig's fields: one road for every setting.

Each field becomes `--field-name` with its type, help and choices (a bool
field is a switch, a tuple of sizes takes several numbers), grouped as
config.json groups them. A flag not given is absent from the namespace
(argparse.SUPPRESS), so the run's DINConfig keeps its own default and
`given(args)` says what the user set.
"""

from __future__ import annotations

import argparse
import dataclasses

from core.config import GROUPS, PRESETS, DINConfig, flag

GROUP_TITLES = {
    "data": "data (how samples are built)",
    "model": "model",
    "optimizer": "optimizer",
    "loop": "training loop",
    "placement": "placement: where the run computes (docs/scaling.md)",
}


def add_config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] = GROUPS) -> None:
    """One flag per DINConfig field, in the field's group (of the groups `only`)."""
    defaults = DINConfig()
    groups = {name: parser.add_argument_group(GROUP_TITLES[name]) for name in only}
    for field in dataclasses.fields(DINConfig):
        if field.metadata["group"] not in groups:
            continue
        meta, default = field.metadata, getattr(defaults, field.name)
        group = groups[meta["group"]]
        if field.type in ("bool", "bool | None"):  # --name / --no-name (a data's default may be on)
            group.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=meta["help"])
            continue
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        options = {"type": {"int": int, "float": float, "str": str}.get(field.type, int), "choices": meta["choices"],
                   "metavar": meta["metavar"], "default": argparse.SUPPRESS,
                   "help": f"{meta['help']} (default {shown!s})" if shown != "" else meta["help"]}
        if isinstance(default, tuple):
            options["nargs"] = "+"
        group.add_argument(flag(field.name), **options)
    if "model" in groups:
        groups["model"].add_argument(
            "--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
            help="start from named settings, each flag given beside it overriding it: "
            + "; ".join(f"{name}: " + ", ".join(f"{flag(k)} {' '.join(map(str, v)) if isinstance(v, tuple) else v}"
                                                 for k, v in values.items()) for name, values in PRESETS.items()))


def given(args: argparse.Namespace, preset: bool = True) -> dict:
    """The DINConfig fields set on the command line (tuples as tuples), over
    those of --preset (unless preset=False)."""
    fields = {f.name for f in dataclasses.fields(DINConfig)}
    explicit = {name: tuple(value) if isinstance(value, list) else value
                for name, value in vars(args).items() if name in fields}
    return (PRESETS[args.preset] if preset and getattr(args, "preset", None) else {}) | explicit


BUILDS = ("local", "beam")


def add_build_flags(parser: argparse.ArgumentParser) -> None:
    """How a raw dataset's cache entry is built (the entry is the same either way)."""
    group = parser.add_argument_group("build: how raw data become the cached samples (docs/data.md)")
    group.add_argument("--build", choices=BUILDS, default="local",
                       help="local: one process, chunk by chunk; beam: an Apache Beam pipeline (pip install -e '.[beam]'), "
                       "for data beyond one machine; Beam's own pipeline options (--project=..., --flink_master=..., "
                       "--direct_num_workers=...) may follow")
    group.add_argument("--runner", default="DirectRunner", metavar="RUNNER",
                       help="--build beam: DirectRunner (this machine), FlinkRunner, SparkRunner or DataflowRunner "
                       "(default DirectRunner)")


def build_options(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]):
    """The data layer's Build from --build, --runner and the arguments argparse
    left (Beam's pipeline options, only with --build beam)."""
    from data.datasets import Build

    if extra and args.build != "beam":  # with --build beam, Beam parses them (and warns of any it does not know)
        parser.error(f"unrecognized arguments: {' '.join(extra)} (Beam's pipeline options go with --build beam)")
    if args.build != "beam" and args.runner != "DirectRunner":
        parser.error("--runner is for --build beam")
    return Build(args.build, args.runner, tuple(extra))
