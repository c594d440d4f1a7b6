"""Package a trained run as a shipped model (src/cmrseg/pretrained_models): ``scripts/make_pretrained.sh`` calls it.

The card file gives the catalog line (name, version, summary, training data, and the shipped model that is its QC
reference, if any) and the model card's notes."""

from __future__ import annotations

import argparse
import json

from cmrseg.pretrained_models.packaging import package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="the trained run folder")
    parser.add_argument("--card", required=True, help="JSON with name, version, summary, training_data and notes")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    args = parser.parse_args()
    card = json.loads(open(args.card).read())
    entry = package(args.run, card["name"], card["version"], card["summary"], card["training_data"], card["notes"],
                    half=not args.float32, qc_reference=card.get("qc_reference"))
    print(f"packaged {entry.name} {entry.version}: {entry.file}, {entry.bytes / 1e6:.2f} MB, sha256 {entry.sha256[:12]}")


if __name__ == "__main__":
    main()
