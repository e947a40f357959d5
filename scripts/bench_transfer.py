"""Transfer between the phantom's renderer families: train on some, test on one never seen.

    python scripts/bench_transfer.py       # the default recipe's families, tested on implicit
    python scripts/bench_transfer.py --directions voxel:implicit implicit:voxel --num-test 1000
    python scripts/bench_transfer.py -- trainer.max_epochs=4  # Hydra overrides for training
    python scripts/bench_transfer.py --checkpoint before=outputs/train/runs/<time>  # extra model

The phantom renders each calcification pattern with three independently written renderer
families (``data.source.phantom.renderers``): ``voxel`` (signed-distance painting,
separable-filter scanner), ``implicit`` (supersampled implicit surfaces and splatted point clouds,
a Fourier-domain scanner) and ``growth`` (deposits grown on a fine lattice by random walks, Eden
growth and excursion sets, cellular tissue, an image-domain scanner). A model that learnt
morphology keeps its AUROC on a family it never saw; one that learnt a renderer's style does not.
For every direction ``A:B`` this script runs the real commands: ``calcinet-train`` on family A,
or on the equal mix of the families ``A1+A2`` (the default recipe plus any overrides given after
``--``), then ``calcinet-evaluate`` of its best checkpoint on the test split of each training
family and of B (same seed, same size). It prints one Markdown table (also written to
``<output-dir>/transfer.md``): the AUROC of every pattern (its findings against all findings of
the other class of the same test set) and overall, per direction and test family. The README
quotes it with the command. A training run that finished under ``--output-dir``
(``train_<families>.done``) with the same overrides, and an evaluation of the same checkpoint on
the same test set (the checkpoint's SHA-256, ``--num-test``, ``--test-seed``;
``eval_*/bench_transfer.txt``), are reused and said so; with other settings they are run again
(the overrides compare as written: the same ones in another order train again).

Runs land under ``--output-dir`` (one folder per direction) and in the MLflow store like any
other; the predictions.csv files of the evaluations hold every probability.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from calcinet.data.phantom import BENIGN_PATTERNS, MALIGNANT_PATTERNS, PATTERNS
from calcinet.data.phantom.config import RENDERERS
from calcinet.files import file_sha256
from calcinet.training.checkpoints import find_checkpoint

BIN = Path(sys.executable).parent


def _run(cmd: list[str], log: Path) -> None:
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"  ({time.perf_counter() - t:.0f} s, exit {rc}; log {log})", flush=True)
    if rc != 0:
        sys.exit(f"bench_transfer: {cmd[0]} failed with exit status {rc}; see {log}")


def pattern_aurocs(predictions: pd.DataFrame) -> dict[str, float]:
    """AUROC of each pattern's findings against every finding of the other class, and overall.

    Raises:
        ValueError: the table has no `pattern`, `label` or `probability` column.
    """
    missing = {"pattern", "label", "probability"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions table lacks the columns {sorted(missing)}")
    y = predictions["label"].to_numpy()
    p = predictions["probability"].to_numpy()
    out = {"overall": float(roc_auc_score(y, p))}
    for pid in PATTERNS:
        own = (predictions["pattern"] == pid).to_numpy()
        if not own.any():
            continue
        other = y != PATTERNS[pid].label
        keep = own | other
        out[pid] = float(roc_auc_score(y[keep], p[keep]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument(
        "--directions",
        nargs="+",
        default=["voxel+growth:implicit"],
        help="TRAIN:TEST renderer families; TRAIN may join several with '+' (trained on their "
             "mix, equal weights: voxel+growth:implicit tests on a family held out); the same "
             "family on both sides (voxel:voxel) gives only the in-family baseline; default: "
             "the default recipe's voxel+growth mix, tested on implicit",
    )
    ap.add_argument("--num-test", type=int, default=800, help="test findings per evaluation")
    ap.add_argument("--test-seed", type=int, default=7, help="dataset seed of the test sets")
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/bench_transfer"))
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also evaluate this checkpoint (or run folder) on every test family, as extra "
             "columns 'LABEL -> test F' (e.g. a model trained before a phantom change)",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for calcinet-train (after --)")
    args = ap.parse_args()
    if args.num_test < 2:  # before any training: an evaluation needs both classes
        ap.error(f"--num-test={args.num_test}: expected 2 or more test findings")

    pairs = []
    for d in args.directions:
        a, _, b = d.partition(":")
        train = a.split("+")
        if not set(train) <= set(RENDERERS) or b not in RENDERERS or len(set(train)) < len(train):
            ap.error(f"--directions: {d!r} is not TRAIN:TEST with TRAIN one family or several "
                     f"different ones joined by '+' and TEST one family, among {list(RENDERERS)}")
        if len(train) > 1 and b in train:
            ap.error(f"--directions: {d!r} tests on a family it trains on; a mix is tested on a "
                     "family left out of it (its training families are evaluated anyway)")
        pairs.append((a, b))

    extra = []
    for item in args.checkpoint:
        label, _, path = item.partition("=")
        if not label or not path or not Path(path).exists():
            ap.error(f"--checkpoint: {item!r} is not LABEL=PATH of an existing checkpoint or run")
        extra.append((label, Path(path).resolve()))

    results: dict[tuple[str, str], dict[str, float]] = {}
    trained: dict[str, tuple[float, str]] = {}  # family -> (seconds, overrides)

    def evaluate(name: str, ckpt: Path, fam: str) -> dict[str, float]:
        """AUROCs of ``ckpt`` on the test split of ``fam``; an evaluation of the same checkpoint
        on the same test set already in ``--output-dir`` is reused."""
        out = (args.output_dir / f"eval_{name}_on_{fam}").resolve()
        # The checkpoint by its contents: a file retrained at the same path is another model.
        made_of = (f"{ckpt}\nsha256={file_sha256(find_checkpoint(ckpt))}\n"
                   f"num_test={args.num_test} test_seed={args.test_seed}\n")
        marker = out / "bench_transfer.txt"
        if (out / "predictions.csv").exists() and marker.is_file() \
                and marker.read_text() == made_of:
            print(f"reusing {out} (the same checkpoint and test set)", flush=True)
        else:
            shutil.rmtree(out, ignore_errors=True)
            _run(
                [
                    str(BIN / "calcinet-evaluate"),
                    f"ckpt_path={ckpt}",
                    f"hydra.run.dir={out}",
                    f"data.source.phantom.renderers=[{fam}]",
                    f"data.source.seed={args.test_seed}",
                    f"data.source.num_test={args.num_test}",
                    "gradcam.enabled=false",
                    "quiet=true",
                ],
                out.parent / f"eval_{name}_on_{fam}.log",
            )
            marker.write_text(made_of)
        return pattern_aurocs(pd.read_csv(out / "predictions.csv"))

    for a, b in pairs:
        run = (args.output_dir / f"train_{a}").resolve()
        ckpt = run / "checkpoints" / "best.ckpt"
        done = run.parent / f"train_{a}.done"  # written when that training finished
        recipe = " ".join(args.overrides)
        if ckpt.exists() and done.exists() and done.read_text().partition("\n")[2].strip() \
                == recipe:
            print(f"reusing {run} (trained with the same overrides)", flush=True)
        else:
            # A new run in a clean folder: the checkpoint callback would keep an older best.
            shutil.rmtree(run, ignore_errors=True)
            done.unlink(missing_ok=True)
            run.mkdir(parents=True)
            for stale in args.output_dir.glob(f"eval_{a}_on_*"):  # of an earlier model
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:  # its log
                    stale.unlink()
            t = time.perf_counter()
            _run(
                [
                    str(BIN / "calcinet-train"),
                    f"hydra.run.dir={run}",
                    f"data.source.phantom.renderers=[{a.replace('+', ',')}]",
                    "quiet=true",
                    *args.overrides,
                ],
                run.parent / f"train_{a}.log",
            )
            done.write_text(f"{time.perf_counter() - t:.0f} s\n{recipe}\n")
        # What the reused or new training was: its minutes and its overrides.
        seconds, _, recipe = done.read_text().partition("\n")
        trained[a] = (float(seconds.split()[0]), recipe.strip())
        for fam in dict.fromkeys((*a.split("+"), b)):
            if (a, fam) in results:
                continue
            results[(a, fam)] = evaluate(a, ckpt, fam)
    test_families = list(dict.fromkeys(b for _, b in pairs))
    for label, path in extra:
        for fam in test_families:
            results[(label, fam)] = evaluate(label, path, fam)

    cols = [(a, f) for a, b in pairs for f in dict.fromkeys((*a.split("+"), b))]
    cols = list(dict.fromkeys(cols)) + [(label, f) for label, _ in extra for f in test_families]
    head = " | ".join(f"train {a} -> test {f}" for a, f in cols)
    lines = [
        "AUROC of each pattern's findings against every finding of the other class ('-': the "
        "pattern has no finding in that test set)",
        "",
        f"| pattern | class | {head} |",
        "|---|---|" + "---|" * len(cols),
    ]
    for pid in (*BENIGN_PATTERNS, *MALIGNANT_PATTERNS, "overall"):
        cls = "" if pid == "overall" else ("malignant" if PATTERNS[pid].label else "benign")
        cells = []
        for c in cols:
            v = results[c].get(pid)
            cells.append("-" if v is None or np.isnan(v) else f"{v:.3f}")
        name = "**overall**" if pid == "overall" else pid
        lines.append(f"| {name} | {cls} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Test sets: {args.num_test} findings each, dataset seed {args.test_seed}; training: "
        + "; ".join(f"train {a}: the default recipe{' with ' + o if o else ''}, {s / 60:.1f} min"
                    for a, (s, o) in trained.items())
        + "".join(f"; {label}: {path}" for label, path in extra)
        + "."
    )
    table = "\n".join(lines)
    print("\n" + table)
    (args.output_dir / "transfer.md").write_text(table + "\n")
    print(f"\n(also in {args.output_dir / 'transfer.md'})")


if __name__ == "__main__":
    main()
