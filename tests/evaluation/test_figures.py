"""Figures a radiologist reads: orientation letters against an asymmetric volume, the Grad-CAM
figure's colour bars and letters, and titles clear of the images (read back from the rendered
figure's bounding boxes)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import AxesImage

from calcinet.evaluation.plots import draw_findings, finding_figure
from calcinet.views import VIEWS, display_slice, orientation_letters, pixel_aspect

# RAS: the index grows towards the patient's Right (x), Anterior (y) and Superior (z). One
# marker at each end of each axis, on the centre lines, in a volume of three different sides.
SHAPE = (9, 11, 13)
MARKERS = {
    "R": (8, 5, 6),
    "L": (0, 5, 6),
    "A": (4, 10, 6),
    "P": (4, 0, 6),
    "S": (4, 5, 12),
    "I": (4, 5, 0),
}


def _marked() -> np.ndarray:
    volume = np.zeros(SHAPE)
    for value, position in enumerate(MARKERS.values(), start=1):
        volume[position] = value
    return volume


def _position(image: np.ndarray, letter: str) -> tuple[int, int]:
    value = list(MARKERS).index(letter) + 1
    rows, columns = np.nonzero(image == value)
    assert len(rows) == 1, letter
    return int(rows[0]), int(columns[0])


@pytest.mark.parametrize("view", VIEWS)
def test_letters_name_the_side_each_marker_is_drawn_on(view: str) -> None:
    image, letters = display_slice(_marked(), view)
    rows, columns = image.shape
    assert _position(image, letters["left"])[1] == 0
    assert _position(image, letters["right"])[1] == columns - 1
    assert _position(image, letters["top"])[0] == 0
    assert _position(image, letters["bottom"])[0] == rows - 1


def test_radiological_convention() -> None:
    # Axial and coronal seen from the feet / the front: the patient's right on the viewer's
    # left; sagittal with anterior on the left; head and front up.
    assert orientation_letters("axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientation_letters("coronal") == {"left": "R", "right": "L", "top": "S",
                                              "bottom": "I"}
    assert orientation_letters("sagittal") == {"left": "A", "right": "P", "top": "S",
                                               "bottom": "I"}
    # Rows and columns of each plane: axial Y x X, coronal Z x X, sagittal Z x Y.
    assert [display_slice(_marked(), v)[0].shape for v in VIEWS] == [(11, 9), (13, 9), (13, 11)]
    assert pixel_aspect((0.5, 0.5, 2.0), "coronal") == 4.0
    assert pixel_aspect((0.5, 0.5, 2.0), "axial") == 1.0
    with pytest.raises(ValueError, match="expected one of axial, coronal, sagittal"):
        display_slice(_marked(), "oblique")
    with pytest.raises(ValueError, match=r"axial slice 13: expected 0 <= index < 13"):
        display_slice(_marked(), "axial", 13)


def _item() -> dict:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.4, SHAPE)
    cam = np.zeros(SHAPE)
    cam[6:9, 3:8, 4:9] = 1.0
    return {"image": image, "cam": cam, "title": "f001: truth malignant, pattern chordoma\n"
            "p(malignant) = 0.120, predicted benign at threshold 0.480"}


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_gradcam_figure_has_plain_and_overlay_rows_colour_bars_and_letters() -> None:
    figure = draw_findings([_item(), _item()], "Most confident errors", (-200, 1800),
                           spacing=(1.0, 1.0, 2.0))
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    blocks = figure.subfigs
    assert len(blocks) == 2
    block = blocks[0]
    images = [ax for ax in block.axes if any(isinstance(a, AxesImage) for a in ax.get_images())
              and ax.get_label() != "<colorbar>"]
    assert len(images) == 6  # patch row and Grad-CAM row, three planes each
    colorbars = [ax for ax in block.axes if ax.get_label() == "<colorbar>"]
    labels = {ax.get_ylabel(): ax for ax in colorbars}
    assert set(labels) == {"HU", "Grad-CAM (1: most important)"}
    assert labels["HU"].get_ylim() == pytest.approx((-200, 1800))
    assert labels["Grad-CAM (1: most important)"].get_ylim() == pytest.approx((0, 1))
    maps = {image.get_cmap().name for ax in images for image in ax.get_images()}
    assert maps == {"gray", "magma"}
    # Every slice carries its plane's letters on the matching sides.
    for ax in images:
        texts = {t.get_text(): t.get_position() for t in ax.texts}
        column = [a for a in images if a.get_subplotspec().colspan == ax.get_subplotspec().colspan]
        view = VIEWS[ax.get_subplotspec().colspan.start]
        letters = orientation_letters(view)
        assert texts[letters["left"]][0] < 0.1 and texts[letters["right"]][0] > 0.9
        assert texts[letters["top"]][1] > 0.9 and texts[letters["bottom"]][1] < 0.1
        assert len(column) == 2
    # Titles clear of every image: the figure title and each finding's title.
    titles = [figure._suptitle, *(b._suptitle for b in blocks)]
    for title in titles:
        box = title.get_window_extent(renderer)
        for ax in [a for b in blocks for a in b.axes]:
            assert not _boxes_overlap(box, ax.get_window_extent(renderer)), title.get_text()
    assert "pattern chordoma" in blocks[0]._suptitle.get_text()


def test_plain_figure_without_maps(tmp_path) -> None:
    item = _item()
    del item["cam"]
    path = finding_figure([item], tmp_path / "errors.png", "Errors", (-200, 1800))
    assert path.stat().st_size > 5000
