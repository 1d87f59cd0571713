"""Unit tests of videokit.overlay: pure drawing functions on numpy arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pytest_video_plugin import Box, Text, compose_grid, side_by_side
from videokit.overlay import (
    BACKGROUND,
    OverlayStyle,
    PanelLayout,
    compose_panels,
    draw_box,
    fit_text,
    format_value,
    legend_rows,
    needs_legend,
    validate_frame,
    wrap_segments,
)


def _tiles(n: int, h: int = 6, w: int = 8) -> np.ndarray:
    """(n, h, w, 3) uint8 tiles, tile i filled with value 10 * (i + 1)."""
    return np.stack([np.full((h, w, 3), 10 * (i + 1), np.uint8) for i in range(n)])


class TestComposeGrid:
    def test_default_cols_is_ceil_sqrt_and_offsets_locate_each_tile(self) -> None:
        tiles = _tiles(5)
        grid, offsets = compose_grid(tiles, pad=2)
        # ceil(sqrt(5)) = 3 columns, 2 rows
        assert grid.shape == (2 * 6 + 2, 3 * 8 + 2 * 2, 3)
        assert grid.dtype == np.uint8
        assert offsets == [(0, 0), (10, 0), (20, 0), (0, 8), (10, 8)]
        for i, (x, y) in enumerate(offsets):
            np.testing.assert_array_equal(grid[y : y + 6, x : x + 8], tiles[i])
        # the padding and the unused last cell are background
        assert tuple(grid[0, 8]) == BACKGROUND
        assert tuple(grid[10, 25]) == BACKGROUND

    def test_scale_upsamples_nearest_and_offsets_follow(self) -> None:
        tiles = _tiles(4, h=3, w=4)
        tiles[2, 1, 2] = (1, 2, 3)
        grid, offsets = compose_grid(tiles, cols=2, pad=1, scale=3)
        assert grid.shape == (2 * 9 + 1, 2 * 12 + 1, 3)
        assert offsets == [(0, 0), (13, 0), (0, 10), (13, 10)]
        x, y = offsets[2]
        # pixel (u=2, v=1) of tile 2 becomes the 3x3 block at (2*3 + x, 1*3 + y)
        block = grid[y + 3 : y + 6, x + 6 : x + 9]
        assert (block == (1, 2, 3)).all()
        # Box.moved maps tile coordinates into the grid the same way
        moved = Box(2, 1, 3, 2).moved(offsets[2], scale=3)
        assert (moved.x1, moved.y1, moved.x2, moved.y2) == (x + 6, y + 3, x + 9, y + 6)

    def test_accepts_a_list_of_tiles(self) -> None:
        grid, offsets = compose_grid(list(_tiles(2)), cols=1, pad=0)
        assert grid.shape == (12, 8, 3)
        assert offsets == [(0, 0), (0, 6)]

    @pytest.mark.parametrize(
        ("tiles", "kwargs", "message"),
        [
            (np.zeros((2, 4, 4), np.uint8), {}, r"shape \(2, 4, 4\)"),
            (np.zeros((2, 4, 4, 3), np.float32), {}, "float32"),
            ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)], {}, "same shape"),
            ([], {}, "at least one tile"),
            (np.zeros((2, 4, 4, 3), np.uint8), {"scale": 0}, "scale"),
            (np.zeros((2, 4, 4, 3), np.uint8), {"cols": 0}, "cols"),
        ],
    )
    def test_rejects_bad_input(self, tiles: object, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            compose_grid(tiles, **kwargs)  # type: ignore[arg-type]


def test_side_by_side_pads_heights_to_match() -> None:
    a = np.full((4, 3, 3), 200, np.uint8)
    b = np.full((6, 5, 3), 100, np.uint8)
    out = side_by_side(a, b, pad=2)
    assert out.shape == (6, 3 + 2 + 5, 3)
    assert (out[:4, :3] == 200).all()
    assert (out[:, 5:] == 100).all()
    assert tuple(out[5, 0]) == BACKGROUND  # below the shorter image
    assert tuple(out[0, 3]) == BACKGROUND  # the gap


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ],
    ids=["float32", "gray", "rgba", "empty"],
)
def test_validate_frame_names_shape_and_dtype(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match=rf"got shape {re.escape(str(frame.shape))} and dtype {frame.dtype}"):
        validate_frame(frame)


def test_validate_frame_rejects_non_arrays() -> None:
    with pytest.raises(ValueError, match="got list"):
        validate_frame([[0, 0, 0]])


class TestBoxAndText:
    def test_box_validates_style_color_and_coordinates(self) -> None:
        with pytest.raises(ValueError, match="style"):
            Box(0, 0, 1, 1, style="dotted")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="color"):
            Box(0, 0, 1, 1, color=(0, 0, 300))
        with pytest.raises(ValueError, match="finite"):
            Box(0, float("nan"), 1, 1)
        with pytest.raises(ValueError, match="scale"):
            Text("x", 0, 0, scale=0)

    def test_caption_includes_confidence(self) -> None:
        assert Box(0, 0, 1, 1, label="vehicle", confidence=0.873).caption == "vehicle 0.87"
        assert Box(0, 0, 1, 1, label="vehicle").caption == "vehicle"

    @pytest.mark.parametrize("style", ["solid", "dashed"])
    def test_draw_box_draws_outline_in_its_color_only_near_the_box(self, style: str) -> None:
        img = np.zeros((120, 160, 3), np.uint8)
        draw_box(img, Box(40, 50, 100, 90, color=(255, 0, 0), style=style), OverlayStyle.for_frame(120, 160))
        red = (img[..., 0] > 128) & (img[..., 1] < 64)
        ys, xs = np.nonzero(red)
        assert xs.min() >= 39 and xs.max() <= 101 and ys.min() >= 49 and ys.max() <= 91
        assert red[50, 40:101].sum() > 20  # top edge present
        assert not red[60:80, 50:90].any()  # interior untouched
        if style == "dashed":
            assert not red[50, 40:101].all()  # gaps in the dashes

    def test_draw_box_outside_the_frame_is_a_no_op(self) -> None:
        img = np.zeros((20, 20, 3), np.uint8)
        draw_box(img, Box(30, 30, 40, 40, label="far"), OverlayStyle.for_frame(20, 20))
        assert not img.any()


class TestText:
    def test_format_value(self) -> None:
        assert format_value(12345.6) == "12,346"
        assert format_value(1.25) == "1.25"
        assert format_value(7) == "7"
        assert format_value(np.float32(0.5)) == "0.5"
        assert format_value(1234567) == "1,234,567"
        assert format_value(0.0001234) == "1.234e-04"
        assert format_value("ok") == "ok"

    def test_fit_text_shortens_to_width(self) -> None:
        style = OverlayStyle.for_frame(240, 320)
        text = "a fairly long line of text that cannot fit"
        short = fit_text(text, 80, style)
        assert short.endswith("...") and style.text_width(short) <= 80
        tail = fit_text(text, 80, style, keep="end")
        assert tail.startswith("...") and tail.endswith("fit")
        assert fit_text("ok", 80, style) == "ok"

    def test_wrap_segments_packs_greedily(self) -> None:
        style = OverlayStyle.for_frame(240, 320)
        lines = wrap_segments(["alpha", "beta", "", "gamma" * 30], 200, style)
        assert lines[0] == "alpha  |  beta"
        assert len(lines) == 2 and lines[1].endswith("...")
        assert all(style.text_width(line) <= 200 for line in lines)


@pytest.mark.parametrize(("h", "w"), [(240, 320), (720, 1280), (121, 161)])
def test_compose_panels_geometry_is_even_and_keeps_the_frame(h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    layout = PanelLayout.for_frame(h, w, header_lines=2, footer_lines=2)
    out = compose_panels(
        frame,
        layout,
        header=["test.py::test_x", "phase: phase1"],
        footer=["FPS 10 steps/s"],
        metrics={"reward": 1.0},
    )
    assert out.shape == (layout.out_h, layout.out_w, 3)
    assert out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0
    assert out.shape[0] > h and out.shape[1] > w
    x, y = layout.origin
    np.testing.assert_array_equal(out[y : y + h, x : x + w], frame)  # no boxes/texts: untouched
    # text was drawn into the header, sidebar and footer
    assert (out[: layout.header_h] != BACKGROUND).any()
    assert (out[y : y + h, w:] != BACKGROUND).any()
    assert (out[y + h :] != BACKGROUND).any()


def test_compose_panels_font_grows_with_frame_size() -> None:
    small = PanelLayout.for_frame(240, 320)
    large = PanelLayout.for_frame(720, 1280)
    assert small.style.font_scale == pytest.approx(0.4)
    assert large.style.font_scale > small.style.font_scale
    assert large.header_h > small.header_h


def test_compose_panels_rejects_frames_not_matching_the_layout() -> None:
    layout = PanelLayout.for_frame(240, 320)
    with pytest.raises(ValueError, match="does not match layout"):
        compose_panels(np.zeros((100, 100, 3), np.uint8), layout)


def test_sidebar_with_too_many_metrics_ends_with_a_more_line() -> None:
    layout = PanelLayout.for_frame(60, 80)
    many = {f"m{i}": i for i in range(50)}
    few = compose_panels(np.zeros((60, 80, 3), np.uint8), layout, metrics={"m0": 0})
    full = compose_panels(np.zeros((60, 80, 3), np.uint8), layout, metrics=many)
    assert few.shape == full.shape  # the sidebar never grows
    x, y = layout.frame_w, layout.header_h
    assert (full[y : y + 60, x:] != few[y : y + 60, x:]).any()


@pytest.mark.parametrize(("h", "w"), [(240, 320), (720, 1280)])
def test_legend_appears_only_when_both_box_styles_are_present(h: int, w: int) -> None:
    frame = np.full((h, w, 3), 60, np.uint8)
    layout = PanelLayout.for_frame(h, w)
    pred = Box(20, 20, 120, 100, label="vehicle", confidence=0.87, color=(255, 140, 0))
    truth = Box(24, 24, 124, 104, label="truth", color=(0, 255, 0), style="dashed")
    both = compose_panels(frame, layout, boxes=[pred, truth], metrics={"reward": 1.5})
    solid_only = compose_panels(frame, layout, boxes=[pred], metrics={"reward": 1.5})
    dashed_only = compose_panels(frame, layout, boxes=[truth], metrics={"reward": 1.5})
    rows = legend_rows(layout)
    assert rows == 3  # title + one row per style, at both sizes
    s = layout.style
    top = layout.header_h + layout.frame_h - rows * s.line_height - s.pad // 2
    legend = (slice(top, layout.header_h + layout.frame_h), slice(layout.frame_w, layout.out_w))
    assert (both[legend] != BACKGROUND).any(axis=-1).sum() > 50  # line samples and words
    assert not (solid_only[legend] != BACKGROUND).any() and not (dashed_only[legend] != BACKGROUND).any()
    # the metrics above the legend are drawn the same way
    metrics_area = (slice(layout.header_h, top), slice(layout.frame_w, layout.out_w))
    np.testing.assert_array_equal(both[metrics_area], solid_only[metrics_area])
    # legible: the legend words are at least as big as the sidebar's other text
    assert s.font_scale >= 0.4


def test_legend_sample_lines_are_solid_and_dashed() -> None:
    layout = PanelLayout.for_frame(240, 320)
    boxes = [Box(2, 2, 20, 20), Box(3, 3, 21, 21, style="dashed")]
    out = compose_panels(np.zeros((240, 320, 3), np.uint8), layout, boxes=boxes)
    s = layout.style
    x0 = layout.frame_w + s.pad
    top = layout.header_h + layout.frame_h - 3 * s.line_height - s.pad // 2
    runs = []
    for i in (1, 2):
        row = out[top + i * s.line_height : top + (i + 1) * s.line_height, x0 : x0 + max(16, 3 * s.ascent)]
        lit = (row > 150).all(axis=-1).any(axis=0)  # columns crossed by the sample line
        runs.append(int(np.count_nonzero(np.diff(lit.astype(int)) != 0)))
    assert runs[0] <= 2 < runs[1]  # one unbroken stroke, then dashes with gaps


def test_needs_legend() -> None:
    assert not needs_legend([])
    assert not needs_legend([Box(0, 0, 1, 1), Box(1, 1, 2, 2)])
    assert needs_legend([Box(0, 0, 1, 1), Box(1, 1, 2, 2, style="dashed")])
