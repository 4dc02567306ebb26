"""Every k-layer cut of a model, scored before any training (docs/small-models.md, "Better starts").

    python -m bench.layer_cuts --model minilm-l6 --layers 3

Each cut is scored on the STS-B and SICK-R *dev* splits (what ``--student-layer-choice dev`` would
choose on, through the same :func:`embtune.encoders.layer_cut.search_layers`); the first-k, the spread
and the dev-chosen cuts are then evaluated on the 7 STS test sets, once each.
"""

from __future__ import annotations

import argparse
import copy

from bench.common import machine, md_table
from embtune.encoders import load_encoder
from embtune.encoders.layer_cut import first_layers, search_layers, spread_layers
from embtune.evaluation.sts import STS_TASKS, evaluate_sts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--layers", type=int, default=3, help="how many layers the cut keeps")
    args = ap.parse_args(argv)
    base = load_encoder(args.model, device="cpu")
    n = base.num_layers

    def cut(layers: tuple[int, ...]):
        enc = copy.deepcopy(base)
        enc.keep_layers(layers)
        return enc

    dev = {}

    def score(layers: tuple[int, ...]) -> float:
        r = evaluate_sts(cut(layers), tasks=("stsb", "sickr"), split="dev")
        dev[layers] = (r["avg"], r["tasks"]["stsb"]["spearman"], r["tasks"]["sickr"]["spearman"])
        return r["avg"]

    found = search_layers(n, args.layers, score)
    named = {"first": first_layers(n, args.layers), "spread": spread_layers(n, args.layers), "dev": found.kept}
    rows = [[",".join(map(str, c)), *dev[c], " ".join(k for k, v in named.items() if v == c)]
            for c in sorted(dev, key=lambda c: -dev[c][0])]
    print(f"Machine: {machine()}\n\n{args.model}: {n} layers; every {args.layers}-layer cut ({found.method}), no training\n")
    print(md_table(["layers kept", "dev avg", "STS-B dev", "SICK-R dev", "rule"], rows))
    test_rows = []
    for name, layers in named.items():
        r = evaluate_sts(cut(layers), tasks=STS_TASKS)
        test_rows.append([name, ",".join(map(str, layers)), r["avg"], *[r["tasks"][t]["spearman"] for t in STS_TASKS]])
    print("\n" + md_table(["rule", "layers", "7-task avg", *STS_TASKS], test_rows))


if __name__ == "__main__":
    main()
