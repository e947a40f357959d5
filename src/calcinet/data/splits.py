"""Patient-level stratified train/val/test splits: no patient is ever in two splits.

Patients are stratified by their label (malignant if any of their findings is); within each
stratum they are taken in the order of a hash of ``(seed, patient)`` and each goes to the split
furthest below its share of that class's findings. The split does not depend on row order and is
the same on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence

from calcinet.config import ConfigError

SPLITS = ("train", "val", "test")


def _order(seed: int, patient: Hashable) -> bytes:
    return hashlib.sha256(f"calcinet-split:{int(seed)}:{patient}".encode()).digest()


def stratified_patient_split(
    labels: Sequence[int],
    patients: Sequence[Hashable],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> list[str]:
    """The split (``"train"``, ``"val"`` or ``"test"``) of each finding.

    Args:
        labels: 0 (benign) / 1 (malignant) per finding.
        patients: the patient of each finding; all findings of a patient go to the same split.
        val_fraction, test_fraction: share of each class's findings sent to val and test.
        seed: the split seed (``data.split_seed``).
    """
    if len(labels) != len(patients):
        raise ValueError(f"{len(labels)} labels but {len(patients)} patients: expected one each")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"data.{name}={value!r}: expected a number in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction = "
                          f"{val_fraction + test_fraction:g}: expected less than 1")
    patient_label: dict[Hashable, int] = {}
    findings: dict[Hashable, int] = {}
    for label, patient in zip(labels, patients, strict=True):
        patient_label[patient] = max(patient_label.get(patient, 0), int(label))
        findings[patient] = findings.get(patient, 0) + 1
    shares = {"train": 1 - val_fraction - test_fraction, "val": val_fraction,
              "test": test_fraction}
    assigned: dict[Hashable, str] = {}
    for stratum in (0, 1):
        members = sorted((p for p, lab in patient_label.items() if lab == stratum),
                         key=lambda p: _order(seed, p))
        # One patient each for val and test first (when there are enough to keep one for
        # training), then every patient to the split furthest below its share of findings.
        seeds = [s for s in ("test", "val") if shares[s] > 0][: max(0, len(members) - 1)]
        total = sum(findings[p] for p in members)
        filled = dict.fromkeys(SPLITS, 0)
        for i, patient in enumerate(members):
            split = seeds[i] if i < len(seeds) else max(
                SPLITS, key=lambda s: shares[s] * total - filled[s])
            assigned[patient] = split
            filled[split] += findings[patient]
    return [assigned[p] for p in patients]


def first_keeping_ratio(labels: Sequence[int], limit: int | None) -> list[int]:
    """Indices (in order) of at most ``limit`` items whose class ratio follows ``labels``'s:
    the classes are interleaved in proportion and the first ``limit`` kept."""
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    totals = {label: list(labels).count(label) for label in set(labels)}
    seen: dict[int, int] = dict.fromkeys(totals, 0)
    ranked = []
    for i, label in enumerate(labels):
        ranked.append(((seen[label] + 0.5) / totals[label], i))
        seen[label] += 1
    return sorted(i for _, i in sorted(ranked)[: max(0, int(limit))])


def kfold_patient_split(
    labels: Sequence[int], patients: Sequence[Hashable], num_folds: int, seed: int = 0
) -> list[int]:
    """The fold (``0 .. num_folds - 1``) of each finding, by patient and stratified by label.

    Within each stratum (patients with / without a malignant finding) patients are taken in the
    order of a hash of ``(seed, patient)`` and each goes to the fold with the fewest findings of
    that stratum so far, so folds are balanced in size and class ratio and never share a patient.
    """
    if len(labels) != len(patients):
        raise ValueError(f"{len(labels)} labels but {len(patients)} patients: expected one each")
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds!r}: expected an integer >= 2")
    patient_label: dict[Hashable, int] = {}
    findings: dict[Hashable, int] = {}
    for label, patient in zip(labels, patients, strict=True):
        patient_label[patient] = max(patient_label.get(patient, 0), int(label))
        findings[patient] = findings.get(patient, 0) + 1
    if len(patient_label) < num_folds:
        raise ConfigError(f"data.num_folds={num_folds}: only {len(patient_label)} patients; "
                          "expected at least one patient per fold")
    assigned: dict[Hashable, int] = {}
    for stratum in (0, 1):
        members = sorted((p for p, lab in patient_label.items() if lab == stratum),
                         key=lambda p: _order(seed, p))
        filled = [0] * num_folds
        for patient in members:
            fold = min(range(num_folds), key=lambda f: (filled[f], f))
            assigned[patient] = fold
            filled[fold] += findings[patient]
    return [assigned[p] for p in patients]


#: What each use of the data needs: training fits on ``train`` and selects on ``val``; an
#: evaluation needs only the split it evaluates (see ``calcinet-evaluate split=``).
PURPOSES = {"training": ("train", "val"), "evaluation": ()}


def split_problems(counts: dict[str, dict[int, int]], needed: Sequence[str],
                   where: str = "") -> list[str]:
    """One line per split of ``needed`` without both classes; ``counts[split] = {0: benign,
    1: malignant}``; ``where`` names the fold (``" of fold 2"``)."""
    found = []
    for split in needed:
        benign, malignant = counts[split].get(0, 0), counts[split].get(1, 0)
        if benign == 0 or malignant == 0:
            found.append(
                f"the {split} split{where} holds {benign} benign and {malignant} malignant "
                "findings; training needs both classes in train and val: add findings of the "
                "missing class or change the split (the manifest's split column, "
                "data.split_seed, data.val_fraction, data.fold_seed, data.source.num_val); an "
                "evaluation-only set needs no train or val split")
    return found


def with_split_problems(report: str, problems: Sequence[str], prefix: str = "") -> str:
    """A source's validation report followed by its :func:`split_problems`, one indented line
    each after ``prefix``: when only the splits are unusable, the report's "no problems" becomes
    "no problems in the rows" (``calcinet-check-manifest`` and ``data.validate_only=true``)."""
    if problems:
        report = report.replace(": no problems;", ": no problems in the rows;", 1)
    return "\n".join([report, *(f"  {prefix}{line}" for line in problems)])
