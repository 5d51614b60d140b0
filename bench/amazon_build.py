"""Build time of the Amazon source (the DIN authors' protocol) at Electronics' size.

    python bench/amazon_build.py [--folder DIR] [--users 192403] [--items 63001] [--reviews 1689188]
                                 [--build local,beam] [--beam-workers 2] [--json FILE]

Writes a synthetic release of that size into DIR once (tests/synthetic_amazon.py:
the 2014 release's layout, a long tail of review counts), then times, each in
a fresh process, the local build (`Amazon().build`: both files read, the
encoded splits written as a cache entry) and the Beam build
(`data/beam/amazon.py`, DirectRunner with --beam-workers processes, on an
uncompressed copy of the files, which it parses in byte ranges), with each
one's peak RSS (the largest process) and the Beam stages' worker-seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from scale import child  # noqa: E402  (bench/ is the script's folder)

BUILD = """
import json, time
from core.config import DINConfig
from data import cache
from data.sources.amazon import Amazon
start = time.perf_counter()
stages = {{}}
if {engine!r} == "local":
    Amazon().build({folder!r}, DINConfig(), {entry!r})
else:
    from data.beam import amazon
    stages = amazon.build({folder!r}, DINConfig(), {entry!r},
                          pipeline_args=("--direct_num_workers={workers}", "--direct_running_mode=multi_processing"))
seconds = time.perf_counter() - start
splits = cache.read({entry!r})
print(json.dumps({{"seconds": seconds, "rows": {{s: int(len(getattr(splits, s)["label"])) for s in ("train", "valid", "test")}},
                  "max_len": splits.encoders.sequence["item_history"].max_len, "stages": stages}}))
"""


def plain_copy(folder: str) -> str:
    """The release's files decompressed beside it (a gzipped file is one range to Beam)."""
    plain = os.path.join(folder, "plain")
    if not os.path.isdir(plain):
        os.makedirs(plain + ".tmp", exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".gz"):
                with gzip.open(os.path.join(folder, name), "rb") as src, \
                        open(os.path.join(plain + ".tmp", name[:-3]), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.replace(plain + ".tmp", plain)
    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "din-amazon-electronics-size"))
    parser.add_argument("--users", type=int, default=192_403)
    parser.add_argument("--items", type=int, default=63_001)
    parser.add_argument("--reviews", type=int, default=1_689_188)
    parser.add_argument("--build", default="local,beam", help="local, beam or local,beam (side by side)")
    parser.add_argument("--beam-workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--json")
    args = parser.parse_args()
    from synthetic_amazon import make_reviews, write_amazon

    if not os.path.isfile(os.path.join(args.folder, "meta_Electronics.json.gz")):
        start = time.perf_counter()
        write_amazon(args.folder, make_reviews(args.users, args.items, args.reviews), args.items)
        print(f"wrote the synthetic release to {args.folder} in {time.perf_counter() - start:.0f} s")
    result = {"users": args.users, "items": args.items, "reviews": args.reviews}
    for engine in args.build.split(","):
        folder = args.folder if engine == "local" else plain_copy(args.folder)
        entry = os.path.join(args.folder, f"entry-{engine}")
        shutil.rmtree(entry, ignore_errors=True)
        result[engine] = child(BUILD.format(engine=engine, folder=folder, entry=entry, workers=args.beam_workers))
        shutil.rmtree(entry, ignore_errors=True)
        figures = result[engine]
        print(f"{engine}: {figures['seconds']:.1f} s, peak RSS {figures['peak_rss_gb']:.2f} GB, rows {figures['rows']}")
        for stage, row in figures["stages"].items():
            print(f"    {stage}: {row['calls']} calls, {row['seconds']:.1f} worker-s, {row['bytes'] / 2**20:,.0f} MB handed on")
    if "local" in result and "beam" in result:
        result["beam_over_local_s"] = result["beam"]["seconds"] / result["local"]["seconds"]
        print(f"beam / local build time: {result['beam_over_local_s']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)

if __name__ == "__main__":
    main()
