"""The full-size benchmark's entry point: `python -m webui.bench --model full-random`.

    python -m webui.bench --model full-random --describe --json

builds the real architecture on the meta device (no memory, no GPU) and prints the parameter
count of each component as one JSON line; it runs anywhere. The timed benchmark on a GPU
(per-image times at 1024x1024, compile, attention backends, memory, served/engine ratio) is
not written yet: without --describe this says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from webui.full_model import parameter_counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=["full-random"], required=True, help="the real architecture, random weights"
    )
    parser.add_argument("--describe", action="store_true", help="parameter counts only, on the meta device")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    if not args.describe:
        print(
            "The timed full-size benchmark is not written yet; --describe counts parameters.", file=sys.stderr
        )
        return 2
    counts = parameter_counts()
    if args.json:
        print(json.dumps(counts))
    else:
        for name, count in counts.items():
            print(f"{name}: {count / 1e9:.2f}B parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
