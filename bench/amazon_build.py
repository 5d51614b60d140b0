"""Build time of the Amazon source (the DIN authors' protocol) at Electronics' size.

    python bench/amazon_build.py [--folder DIR] [--users 192403] [--items 63001] [--reviews 1689188] [--json FILE]

Writes a synthetic release of that size into DIR once (tests/synthetic_amazon.py:
the 2014 release's layout, a long tail of review counts), then times, in a
fresh process, reading both files and building the encoded splits
(`data.sources.amazon.load_splits`, no cache), and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

BUILD = """
import json, time
from core.config import DINConfig
from data.sources import amazon
start = time.perf_counter()
splits = amazon.load_splits({folder!r}, DINConfig())
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "rows": {{s: int(len(getattr(splits, s)["label"])) for s in ("train", "valid", "test")}},
                  "max_len": splits.encoders.sequence["item_history"].max_len}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "din-amazon-electronics-size"))
    parser.add_argument("--users", type=int, default=192_403)
    parser.add_argument("--items", type=int, default=63_001)
    parser.add_argument("--reviews", type=int, default=1_689_188)
    parser.add_argument("--json")
    args = parser.parse_args()
    from synthetic_amazon import make_reviews, write_amazon

    if not os.path.isfile(os.path.join(args.folder, "meta_Electronics.json.gz")):
        start = time.perf_counter()
        write_amazon(args.folder, make_reviews(args.users, args.items, args.reviews), args.items)
        print(f"wrote the synthetic release to {args.folder} in {time.perf_counter() - start:.0f} s")
    child = subprocess.run([sys.executable, "-c", BUILD.format(folder=args.folder)], cwd=ROOT, capture_output=True,
                           text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    result |= {"users": args.users, "items": args.items, "reviews": args.reviews}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
