"""The renderer families written apart from the voxel one (``config.FAMILY_MODULES``), each
through the phantom's own calls: none of its nuisance draws predicts the class, its samples are
drawn independently of the class, mixing it in leaves the voxel family's samples bit-identical,
and the montage draws it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from calcinet.data.phantom import PATTERNS, PhantomConfig, generate_sample, render, sample_params
from calcinet.data.phantom.config import FAMILY_MODULES, RENDERERS, family

FAMILIES = list(FAMILY_MODULES)


def test_every_family_is_a_renderer_covering_both_classes() -> None:
    assert ("voxel", *FAMILIES) == RENDERERS and len(FAMILIES) >= 2
    for name in FAMILIES:
        covered = family(name).COVERED
        assert set(covered) <= set(PATTERNS)
        assert {PATTERNS[p].label for p in covered} == {0, 1}, name
        # The finding's offset from the patch centre, under the names every family shares
        # (the montage slices through it).
        assert {"jitter_z_mm", "jitter_y_mm", "jitter_x_mm"} <= set(family(name).NUISANCE_KEYS)


# -- no shortcuts ----------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=FAMILIES)
def nuisance_draws(request):
    """4000 samples of one family drawn as the phantom draws them (class first), with labels."""
    config = PhantomConfig(renderers=request.param)
    draws = [sample_params(i, 2024, config) for i in range(4000)]
    return request.param, draws, np.array([d["label"] for d in draws])


def _numeric(draws, key) -> np.ndarray:
    values = [d[key] for d in draws]
    if isinstance(values[0], str):
        cats = sorted(set(values))
        return np.array([cats.index(v) for v in values], float)
    return np.array(values, float)


def test_each_nuisance_key_alone_is_at_chance(nuisance_draws) -> None:
    from sklearn.metrics import roc_auc_score

    name, draws, y = nuisance_draws
    keys = family(name).NUISANCE_KEYS
    alpha = 0.01 / len(keys)  # Bonferroni: 1 % family-wise over the keys
    for key in keys:
        values = np.array([d[key] for d in draws])
        if values.dtype.kind in "fi":
            p = stats.ks_2samp(values[y == 0], values[y == 1]).pvalue
        else:
            cats = sorted(set(values))
            table = [[np.sum((values == c) & (y == k)) for c in cats] for k in (0, 1)]
            p = stats.chi2_contingency(table).pvalue if len(cats) > 1 else 1.0
        assert p > alpha, f"{name}: {key} differs between classes (p={p:.2g})"
        auroc = roc_auc_score(y, _numeric(draws, key))
        assert abs(auroc - 0.5) < 0.05, f"{name}: {key}: AUROC {auroc:.3f}"


def test_a_classifier_on_all_nuisance_keys_is_at_chance(nuisance_draws) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    name, draws, y = nuisance_draws
    X = np.stack([_numeric(draws, k) for k in family(name).NUISANCE_KEYS], 1)
    clf = HistGradientBoostingClassifier(max_depth=3, max_iter=60, random_state=0)
    prob = cross_val_predict(clf, X, y, cv=5, method="predict_proba")[:, 1]
    assert abs(roc_auc_score(y, prob) - 0.5) < 0.05, name


# -- integration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_mixing_a_family_in_leaves_the_voxel_samples_bit_for_bit(name: str) -> None:
    tiny = dict(patch_size=(16, 16, 16), spacing=(2.0, 2.0, 2.0))
    default = PhantomConfig(**tiny)
    assert default.renderers == ("voxel",)
    both = PhantomConfig(**tiny, renderers={"voxel": 1.0, name: 1.0})
    seen = set()
    for i in range(12):
        a = generate_sample(i, 5, default)
        b = generate_sample(i, 5, PhantomConfig(**tiny, renderers=["voxel"]))
        assert a["params"] == b["params"] and a["params"]["renderer"] == "voxel"
        np.testing.assert_array_equal(a["image"], b["image"])
        # Mixing families keeps class, pattern and every voxel-rendered sample unchanged.
        m = generate_sample(i, 5, both)
        assert (m["pattern"], m["label"]) == (a["pattern"], a["label"])
        seen.add(m["params"]["renderer"])
        if m["params"]["renderer"] == "voxel":
            np.testing.assert_array_equal(m["image"], a["image"])
        else:
            assert m["image"].shape == (16, 16, 16) and np.isfinite(m["image"]).all()
            np.testing.assert_array_equal(m["image"], render(m["params"], both))
    assert seen == {"voxel", name}


@pytest.mark.parametrize("name", FAMILIES)
def test_the_renderer_is_drawn_independently_of_the_class(name: str) -> None:
    config = PhantomConfig(renderers={"voxel": 1.0, name: 3.0})
    draws = [sample_params(i, 8, config) for i in range(2000)]
    y = np.array([d["label"] for d in draws])
    own = np.array([d["renderer"] == name for d in draws])
    assert own.mean() == pytest.approx(0.75, abs=0.03)
    table = [[np.sum(own & (y == k)), np.sum(~own & (y == k))] for k in (0, 1)]
    assert stats.chi2_contingency(table).pvalue > 0.01


def test_an_unknown_renderer_in_the_params_fails_in_one_line() -> None:
    params = {**sample_params(0, 0), "renderer": "pixel"}
    with pytest.raises(ValueError, match=r"params\['renderer'\]='pixel' is unknown") as info:
        render(params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("pixel", "'pixel' is unknown"),
        ([], "a non-empty list"),
        ({"implicit": 0.0}, "at least one positive weight"),
        ({"growth": -1.0}, "a weight >= 0"),
        (["voxel", "growth", "voxel"], "'voxel' is repeated"),
    ],
)
def test_bad_renderers_fail_in_one_line(value, fragment) -> None:
    with pytest.raises(ValueError, match="PhantomConfig.renderers=") as info:
        PhantomConfig(renderers=value)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_montage_draws_the_chosen_renderer(tmp_path) -> None:
    from matplotlib.image import imread

    from calcinet.data.phantom.montage import render_montage

    config = PhantomConfig(patch_size=(16, 16, 16), spacing=(3.0, 3.0, 3.0))
    args = dict(config=config, seed=0, patterns=["phlebolith"])
    voxel = imread(render_montage(tmp_path / "v.png", **args))
    again = imread(render_montage(tmp_path / "v2.png", **args, renderer="voxel"))
    np.testing.assert_array_equal(voxel, again)
    drawn = [voxel]
    for name in FAMILIES:
        other = imread(render_montage(tmp_path / f"{name}.png", **args, renderer=name))
        assert voxel.shape == other.shape
        assert not any(np.array_equal(other, d) for d in drawn), name
        drawn.append(other)
