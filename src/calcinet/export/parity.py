"""Parity: the exported files, reloaded in a fresh process, give the checkpoint's probabilities.

The reference is the checkpoint as training used it: MONAI's ``ScaleIntensityRange`` on HU, the
eager ``CalciModule`` and its calibrated sigmoid. The exported files are loaded by a new Python
process that imports only torch, as a consumer would, so anything the file silently depends on
(calcinet code, a module attribute, a missing extra file) shows up here and not in production.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

#: HU range of the random check patches: beyond both ends of any CT window (air to dense bone).
CHECK_HU_RANGE = (-1200.0, 3000.0)

# Runs in the fresh process: torch only. It imports torch first (and, given the argument
# "pt2", torch.export's deserializer: 1.9 s of a first torch.export.load's 2.2-3.1 s, spent while
# the export still runs), then reads one JSON line on stdin: [torchscript path, pt2 path or "",
# inputs, outputs].
CHILD = r"""
import json, sys
import torch
if sys.argv[1:] == ["pt2"]:
    import torch._export.serde.serialize
ts_path, pt2_path, inputs_path, outputs_path = json.loads(sys.stdin.readline())
hu = torch.load(inputs_path, weights_only=True)
extra = {"metadata.json": ""}
outputs, report = {}, {}
with torch.inference_mode():
    model = torch.jit.load(ts_path, map_location="cpu", _extra_files=extra)
    outputs["torchscript"] = model(hu)
    report["metadata_bytes"] = len(extra["metadata.json"])
    if pt2_path:
        outputs["torch_export"] = torch.export.load(pt2_path).module()(hu)
report["foreign_modules"] = sorted(
    {name.split(".")[0] for name in sys.modules}
    & {"calcinet", "lightning", "pytorch_lightning", "monai", "mlflow", "hydra"}
)
torch.save(outputs, outputs_path)
print(json.dumps(report))
"""


@dataclass
class ParityResult:
    """What the fresh process gave, compared with the checkpoint (None: format not checked)."""

    num_patches: int
    tolerance: float
    torchscript_max_abs_diff: float
    torch_export_max_abs_diff: float | None
    checked_in: str = "fresh Python process importing only torch"

    @property
    def torchscript_ok(self) -> bool:
        return self.torchscript_max_abs_diff <= self.tolerance

    @property
    def torch_export_ok(self) -> bool | None:
        if self.torch_export_max_abs_diff is None:
            return None
        return self.torch_export_max_abs_diff <= self.tolerance

    def as_metadata(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "hu_range": list(CHECK_HU_RANGE),
            "torchscript_passed": self.torchscript_ok,
            "torch_export_passed": self.torch_export_ok,
        }


def check_batch(patch_size: list[int], num_patches: int, seed: int = 0) -> torch.Tensor:
    """``[N, 1, X, Y, Z]`` float32 HU: a uniform-air patch, then smooth random HU fields."""
    generator = torch.Generator().manual_seed(seed)
    low, high = CHECK_HU_RANGE
    noise = torch.rand((num_patches, 1, *patch_size), generator=generator) * (high - low) + low
    # Smooth half of the signal so patches have structure as well as voxel noise.
    smooth = torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2, count_include_pad=False)
    batch = 0.5 * noise + 0.5 * smooth
    batch[0] = -1000.0
    return batch.float()


def reference_probabilities(
    module: torch.nn.Module, hu: torch.Tensor, hu_window: list[float]
) -> torch.Tensor:
    """The checkpoint's answer: MONAI windowing (as in training), eager forward, the stored
    temperature and the sigmoid (``CalciModule.probability``)."""
    from monai.transforms import ScaleIntensityRange

    window = ScaleIntensityRange(
        a_min=hu_window[0], a_max=hu_window[1], b_min=0.0, b_max=1.0, clip=True
    )
    with torch.inference_mode():
        windowed = torch.as_tensor(window(hu.clone()), dtype=torch.float32)
        return module.eval().probability(windowed)


class FreshProcess:
    """A new interpreter (isolated mode: neither the current folder nor PYTHONPATH can inject
    modules) that imports only torch and then computes the outputs of the saved files.

    It starts when created, so its start-up (importing torch, and torch.export's loader when
    ``programs``: seconds) overlaps with the export's own work; :meth:`run` hands it the files.
    Use it as a context manager: leaving stops it if it is still running and removes its
    temporary folder."""

    def __init__(self, programs: bool = True) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="calcinet-parity-")
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", CHILD, *(["pt2"] if programs else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def run(
        self, torchscript: Path, program: Path | None, hu: torch.Tensor, timeout: float = 600
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Outputs of ``torchscript`` (and ``program``) on ``hu`` ``[N, 1, X, Y, Z]``, with the
        child's report (``foreign_modules``: packages other than torch it had to import).

        Raises:
            RuntimeError: the child failed (its last stderr lines are in the message).
        """
        folder = Path(self._folder.name)
        inputs, outputs = folder / "inputs.pt", folder / "outputs.pt"
        torch.save(hu, inputs)
        request = json.dumps([str(torchscript), str(program) if program else "", str(inputs),
                              str(outputs)])
        stdout, stderr = self._process.communicate(request + "\n", timeout=timeout)
        if self._process.returncode != 0:
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            raise RuntimeError(
                f"reloading {torchscript.name} in a fresh process failed "
                f"(exit {self._process.returncode}): {tail}"
            )
        report = json.loads(stdout.strip().splitlines()[-1])
        return torch.load(outputs, weights_only=True), report

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._folder.cleanup()

    def __enter__(self) -> FreshProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_fresh_process(
    torchscript: Path, program: Path | None, hu: torch.Tensor, timeout: float = 600
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Outputs of the saved files on ``hu``, computed by a new interpreter importing only torch."""
    with FreshProcess() as fresh:
        return fresh.run(torchscript, program, hu, timeout)


def check_parity(
    module: torch.nn.Module,
    hu_window: list[float],
    torchscript: Path,
    program: Path | None,
    hu: torch.Tensor,
    tolerance: float,
    fresh: FreshProcess | None = None,
) -> ParityResult:
    """Compare the files (in a fresh process; ``fresh``: one started earlier) with the
    checkpoint on ``hu``."""
    expected = reference_probabilities(module, hu, hu_window)
    if fresh is None:
        outputs, report = run_fresh_process(torchscript, program, hu)
    else:
        outputs, report = fresh.run(torchscript, program, hu)
    if report["foreign_modules"]:
        raise RuntimeError(
            f"loading {torchscript.name} imported {report['foreign_modules']}; "
            "an exported model must need torch only"
        )

    def difference(name: str) -> float | None:
        if name not in outputs:
            return None
        got = outputs[name].float()
        if got.shape != expected.shape:
            return float("inf")
        return float((got - expected).abs().max())

    return ParityResult(len(hu), tolerance, difference("torchscript"), difference("torch_export"))
