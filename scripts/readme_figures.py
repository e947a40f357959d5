"""Write the README's pictures into docs/: the test ROC curve, the decision curve, a Grad-CAM
figure of the most confident error and the phantom montage.

    python scripts/readme_figures.py                    # a quick training run, then evaluate it
    python scripts/readme_figures.py --run outputs/train/runs/<time>   # figures of a real run
    python scripts/readme_figures.py --montages-only --real-backgrounds SCAN ...   # montages only

The montages: ``phantom_montage.png`` (voxel renderer family), ``phantom_montage_implicit.png``
(implicit family) and, with ``--real-backgrounds``, ``phantom_real_backgrounds.png``: findings
inserted into the given CT scans, e.g. ``../shared/fixtures/real/nrrd/lung1_image.nrrd`` (the
README's figure).

Without ``--run`` it trains the default recipe on fewer samples and epochs (``QUICK``, a few
minutes on two CPU cores) without MLflow, then runs ``calcinet-evaluate`` on its test split; both
through the console scripts, as a user would. The figures are copied from the evaluation's
``figures/`` folder; the montage is rendered by ``calcinet.data.phantom.montage``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUICK = [
    "data.source.num_train=160",
    "data.source.num_val=80",
    "data.source.num_test=120",
    "trainer.max_epochs=3",
    "logger=none",
]
#: evaluation figure -> README picture
COPIES = {
    "roc.png": "test_roc.png",
    "decision_curve.png": "decision_curve.png",
    "gradcam_errors.png": "gradcam_example.png",
}


def _run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


#: Patterns of the real-background montage: three benign, three malignant.
REAL_BACKGROUND_PATTERNS = (
    "phlebolith", "myositis_ossificans", "vascular",
    "chondrosarcoma_high_grade", "blastic_metastasis", "pleural_plaque_malignant",
)


def real_background_montage(scans: list[str], out: Path) -> Path:
    """Every sample of the montage on a real background (soft tissue around the centre)."""
    from calcinet.data.phantom import PhantomConfig
    from calcinet.data.phantom.montage import render_montage

    config = PhantomConfig(backgrounds=tuple(scans), real_background_fraction=1.0)
    return render_montage(out / "phantom_real_backgrounds.png", config, seed=0,
                          patterns=REAL_BACKGROUND_PATTERNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="training run folder or checkpoint to evaluate")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the pictures")
    parser.add_argument(
        "--montages-only", action="store_true", help="only draw the phantom montages"
    )
    parser.add_argument("--real-backgrounds", nargs="+", metavar="SCAN",
                        help="also write phantom_real_backgrounds.png, findings inserted into "
                             "these CT scans (NIfTI, NRRD or DICOM series folders)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides of the quick run")
    args = parser.parse_args()
    missing = [scan for scan in args.real_backgrounds or () if not Path(scan).exists()]
    if missing:  # before any picture is drawn
        parser.error(f"--real-backgrounds: {missing[0]} does not exist; expected CT scans "
                     "(NIfTI, NRRD files or DICOM series folders)")
    if not args.montages_only:
        _evaluation_figures(args)
    from calcinet.data.phantom.montage import render_montage

    print(f"Wrote {render_montage(args.out / 'phantom_montage.png', seed=0)}")
    for family in ("implicit", "growth"):
        montage = args.out / f"phantom_montage_{family}.png"
        print(f"Wrote {render_montage(montage, seed=0, renderer=family)}")
    if args.real_backgrounds:
        print(f"Wrote {real_background_montage(args.real_backgrounds, args.out)}")


def _evaluation_figures(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="calcinet-figures-") as scratch:
        work = Path(scratch)
        run = args.run
        if run is None:
            run = work / "train"
            _run([str(BIN / "calcinet-train"), *QUICK, *args.overrides, f"hydra.run.dir={run}"])
        evaluation = work / "evaluate"
        _run(
            [
                str(BIN / "calcinet-evaluate"),
                f"ckpt_path={run}",
                "mlflow.enabled=false",
                "gradcam.num_errors=1",
                f"hydra.run.dir={evaluation}",
            ]
        )
        args.out.mkdir(parents=True, exist_ok=True)
        for source, target in COPIES.items():
            shutil.copyfile(evaluation / "figures" / source, args.out / target)
            print(f"Wrote {args.out / target}")


if __name__ == "__main__":
    main()
