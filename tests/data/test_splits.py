"""Patient-level stratified splits: leak-free, class ratio kept, deterministic, explicit splits
respected."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from calcinet.data.manifest import ManifestSource
from calcinet.data.splits import first_keeping_ratio, stratified_patient_split
from tests.data.conftest import patch_rows, write_manifest


def _cohort(n_patients: int = 300, seed: int = 1) -> tuple[list[int], list[str]]:
    """1-4 findings per patient, about 30 % of patients malignant (all their findings)."""
    import random

    rng = random.Random(seed)
    labels, patients = [], []
    for p in range(n_patients):
        malignant = rng.random() < 0.3
        for _ in range(rng.randint(1, 4)):
            labels.append(int(malignant))
            patients.append(f"patient-{p}")
    return labels, patients


def test_no_patient_is_in_two_splits_and_the_class_ratio_is_kept() -> None:
    labels, patients = _cohort()
    splits = stratified_patient_split(labels, patients, 0.15, 0.15, seed=3)
    where = defaultdict(set)
    for patient, split in zip(patients, splits, strict=True):
        where[patient].add(split)
    assert all(len(s) == 1 for s in where.values())
    overall = sum(labels) / len(labels)
    for split, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        members = [lab for lab, s in zip(labels, splits, strict=True) if s == split]
        assert abs(sum(members) / len(members) - overall) < 0.02, split
        assert len(members) / len(labels) == pytest.approx(share, abs=0.01), split


def test_split_is_deterministic_by_seed_and_independent_of_row_order() -> None:
    labels, patients = _cohort()
    a = stratified_patient_split(labels, patients, 0.2, 0.1, seed=7)
    assert a == stratified_patient_split(labels, patients, 0.2, 0.1, seed=7)
    assert a != stratified_patient_split(labels, patients, 0.2, 0.1, seed=8)
    order = list(reversed(range(len(labels))))
    shuffled = stratified_patient_split([labels[i] for i in order], [patients[i] for i in order],
                                        0.2, 0.1, seed=7)
    assert [shuffled[order.index(i)] for i in range(len(labels))] == a


def test_small_cohorts_still_get_both_classes_in_every_split() -> None:
    labels = [0, 1] * 4
    splits = stratified_patient_split(labels, list(range(8)), 0.15, 0.15, seed=0)
    for split in ("train", "val", "test"):
        assert {lab for lab, s in zip(labels, splits, strict=True) if s == split} == {0, 1}
    assert stratified_patient_split([0, 1], ["a", "b"], 0.5, 0.0) == ["train", "train"]


def test_a_patient_with_any_malignant_finding_is_stratified_as_malignant() -> None:
    # p has a benign and a malignant finding; s one malignant; b1..b4 one benign each.
    labels = [0, 1, 1, 0, 0, 0, 0]
    patients = ["p", "p", "s", "b1", "b2", "b3", "b4"]
    splits = stratified_patient_split(labels, patients, 0.5, 0.0)
    assert splits[0] == splits[1]  # a patient's findings stay together
    by_patient = dict(zip(patients, splits, strict=True))
    # Malignant stratum {p, s}: one of them in val; benign stratum {b1..b4}: two in val. Were p
    # counted benign, the benign stratum would hold five patients and send only one b to val.
    assert sorted([by_patient["p"], by_patient["s"]]) == ["train", "val"]
    assert sum(by_patient[b] == "val" for b in ("b1", "b2", "b3", "b4")) == 2


def test_manifest_without_split_column_splits_by_patient(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 40, patients=20)
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows), split_seed=5,
                            val_fraction=0.2, test_fraction=0.2)
    seen = {}
    for split in ("train", "val", "test"):
        for record in source.records(split):
            assert seen.setdefault(record["patient_id"], split) == split
    assert Counter(seen.values()) == {"train": 12, "val": 4, "test": 4}  # 2 findings each
    again = ManifestSource(write_manifest(tmp_path / "m.csv", rows), split_seed=5,
                           val_fraction=0.2, test_fraction=0.2)
    assert [r["id"] for r in again.records("val")] == [r["id"] for r in source.records("val")]


def test_findings_of_one_scan_stay_together_without_patient_ids(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 16)
    for row in rows:
        del row["patient_id"]
    centre = {"center_x": 6, "center_y": 6, "center_z": 6, "coord_space": "voxel"}
    rows = [{**r, **centre} for r in rows] + [{**r, **centre, "center_x": 5} for r in rows]
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows), patch_size=(8, 8, 8),
                            spacing=(1, 1, 1))
    split_of = defaultdict(set)
    for split in ("train", "val", "test"):
        for record in source.records(split):
            split_of[record["image"]].add(split)
    assert len(split_of) == 16 and all(len(s) == 1 for s in split_of.values())


def test_explicit_split_column_is_respected(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 12)
    names = ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    for row, split in zip(rows, names, strict=True):
        row["split"] = split.upper() if split == "test" else split
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows))
    assert [len(source.records(s)) for s in ("train", "val", "test")] == [6, 2, 4]
    assert [r["manifest_line"] for r in source.records("val")] == [8, 9]


def test_first_keeping_ratio() -> None:
    labels = [0] * 8 + [1] * 2
    keep = first_keeping_ratio(labels, 5)
    assert len(keep) == 5 and sum(labels[i] for i in keep) == 1
    assert first_keeping_ratio(labels, None) == list(range(10))
