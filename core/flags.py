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


class Parser(argparse.ArgumentParser):
    """argparse with a user's mistake in one line (the flag and what is wrong,
    then where the flags are listed), exit code 2, instead of the usage first."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (python {self.prog} --help lists the flags)\n")


def add_config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] = GROUPS,
                     data_defaults: dict[str, dict] | None = None) -> None:
    """One flag per DINConfig field, in the field's group (of the groups `only`);
    data_defaults {data: {field: value}}: the defaults a kind of data sets,
    shown beside DINConfig's in the field's help."""
    defaults = DINConfig()

    def shown(value) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    def noted(name: str, text: str) -> str:
        notes = [f"{data}: {shown(values[name])}" for data, values in (data_defaults or {}).items() if name in values]
        return "; ".join(filter(None, [text, *notes]))

    groups = {name: parser.add_argument_group(GROUP_TITLES[name]) for name in only}
    for field in dataclasses.fields(DINConfig):
        if field.metadata["group"] not in groups:
            continue
        meta, default = field.metadata, getattr(defaults, field.name)
        group = groups[meta["group"]]
        if field.type in ("bool", "bool | None"):  # --name / --no-name (a data's default may be on)
            text = noted(field.name, "default off" if default is False else "off where a data has no such feature")
            group.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"{meta['help']} ({text})" if text else meta["help"])
            continue
        text = noted(field.name, f"default {shown(default)}" if shown(default) != "" else "")
        options = {"type": {"int": int, "float": float, "str": str}.get(field.type, int), "choices": meta["choices"],
                   "metavar": meta["metavar"], "default": argparse.SUPPRESS,
                   "help": f"{meta['help']} ({text})" if text else meta["help"]}
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
