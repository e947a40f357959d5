"""The phantom montage: titles and labels clear of the slices, orientation letters, a PNG."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.montage import montage_figure, render_montage
from calcinet.views import orientation_letters

PATTERNS = ["phlebolith", "chordoma", "enchondroma"]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_title_and_labels_are_clear_of_the_slices() -> None:
    config = PhantomConfig(patch_size=(24, 32, 32), spacing=(2.0, 1.25, 1.25))
    figure = montage_figure(config, seed=1, patterns=PATTERNS)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    axes = figure.axes
    assert len(axes) == 3 * len(PATTERNS)
    boxes = [ax.get_window_extent(renderer) for ax in axes]
    title = figure._suptitle.get_window_extent(renderer)
    assert title.y0 >= max(box.y1 for box in boxes)  # above every slice
    page = figure.bbox  # and whole: not cut at the figure's edges
    assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1, (title, page)
    texts = [figure._suptitle, *(ax.title for ax in axes), *(ax.yaxis.label for ax in axes)]
    for text in texts:
        if not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        for ax, other in zip(axes, boxes, strict=True):
            if text in (ax.title, ax.yaxis.label):
                continue
            assert not _overlap(box, other), text.get_text()
    # Row labels name the class and the pattern; every slice has its plane's letters.
    assert axes[3].get_ylabel() == "malignant\nchordoma\n(voxel)"  # the family that drew it
    assert figure._suptitle.get_text().startswith("calcinet phantom (voxel), seed")
    for index, ax in enumerate(axes):
        view = ("axial", "coronal", "sagittal")[index % 3]
        assert sorted(t.get_text() for t in ax.texts) == sorted(orientation_letters(view).values())


def test_render_montage_writes_the_figure(tmp_path) -> None:
    path = render_montage(tmp_path / "m.png", PhantomConfig(patch_size=(24, 24, 24)),
                          patterns=PATTERNS[:1])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
