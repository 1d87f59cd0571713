"""Pure overlay drawing on RGB frames: boxes, free text, header/footer bars, a metrics sidebar, grids.

Every image here is a numpy array of shape ``(H, W, 3)``, dtype ``uint8``, channel order RGB, pixel
coordinates with x to the right and y down, origin at the top-left pixel. Colours are ``(R, G, B)``
tuples of ints in ``[0, 255]``. Text is drawn with OpenCV's ``FONT_HERSHEY_SIMPLEX`` face, anti-aliased
(``cv2.LINE_AA``), at a size derived from the frame size (:class:`OverlayStyle`) so that it stays
legible from 320x240 to 1280x720 frames.

The functions either return new arrays or draw in place on an array they document as writable; none
keeps state. This module does not import pytest: it is usable as a library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .errors import import_optional

__all__ = [
    "BACKGROUND",
    "Box",
    "Color",
    "OverlayStyle",
    "PanelLayout",
    "Text",
    "background_canvas",
    "compose_grid",
    "compose_panels",
    "draw_box",
    "draw_text",
    "fit_text",
    "format_value",
    "legend_rows",
    "needs_legend",
    "side_by_side",
    "validate_frame",
    "wrap_segments",
]

Color = tuple[int, int, int]

#: Fill colour of bars, sidebar and grid padding (RGB).
BACKGROUND: Color = (24, 24, 28)
#: Colour of bar and sidebar text (RGB).
FOREGROUND: Color = (235, 235, 235)
#: Colour of secondary text such as the sidebar title (RGB).
MUTED: Color = (150, 160, 175)
#: Separator placed between segments packed onto one bar line.
SEPARATOR = "  |  "
#: Suffix of text shortened to fit its space (ASCII, so OpenCV 4.x can draw it too).
ELLIPSIS = "..."

BoxStyle = Literal["solid", "dashed"]


def _cv2() -> Any:
    return import_optional("cv2", "drawing video overlays")


def background_canvas(height: int, width: int) -> np.ndarray:
    """New (height, width, 3) uint8 image filled with :data:`BACKGROUND`.

    Filled by OpenCV: numpy's broadcast of a 3-tuple over an image is ~25x slower.
    """
    cv2 = _cv2()
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    cv2.rectangle(canvas, (0, 0), (width, height), BACKGROUND, cv2.FILLED)
    return canvas


def _check_color(color: Sequence[int], what: str) -> Color:
    if len(color) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= int(c) <= 255 for c in color):
        raise ValueError(f"{what} must be an (R, G, B) tuple of ints in [0, 255], got {color!r}")
    return (int(color[0]), int(color[1]), int(color[2]))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box to draw on a frame, with an optional label.

    Attributes:
        x1, y1: top-left corner, pixels in the caller's frame (floats are rounded).
        x2, y2: bottom-right corner, pixels; corners given in the other order are swapped.
        label: text drawn on a tab above the box (inside it when there is no room above).
        color: outline and tab colour, (R, G, B).
        confidence: detector score in [0, 1], appended to the label as ``"0.87"``; None for none.
        style: ``"solid"`` for predictions, ``"dashed"`` for ground truth.

    Raises:
        ValueError: a coordinate is not finite, the colour is not RGB, or the style is unknown.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""
    color: Color = (0, 255, 0)
    confidence: float | None = None
    style: BoxStyle = "solid"

    def __post_init__(self) -> None:
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(float(c)) for c in coords):
            raise ValueError(f"Box coordinates must be finite pixels, got {coords!r}")
        if self.style not in ("solid", "dashed"):
            raise ValueError(f"Box style must be 'solid' or 'dashed', got {self.style!r}")
        object.__setattr__(self, "color", _check_color(self.color, "Box color"))

    def moved(self, offset: tuple[float, float], scale: float = 1.0) -> Box:
        """Return this box scaled about the origin by ``scale`` and then shifted by ``offset``.

        Use it with :func:`compose_grid`: ``box.moved(offsets[i], scale)`` maps a box drawn in tile
        ``i`` into the grid image.
        """
        dx, dy = offset
        return replace(
            self,
            x1=self.x1 * scale + dx,
            y1=self.y1 * scale + dy,
            x2=self.x2 * scale + dx,
            y2=self.y2 * scale + dy,
        )

    @property
    def caption(self) -> str:
        """The label text as drawn: ``label`` plus the confidence with two decimals, if any."""
        if self.confidence is None:
            return self.label
        return f"{self.label} {self.confidence:.2f}".strip()


@dataclass(frozen=True)
class Text:
    """Free text drawn at a pixel position of the caller's frame, on a dark backing box.

    Attributes:
        text: the string; OpenCV >= 5 draws Unicode, OpenCV 4.x only ASCII (others become ``?``).
        x, y: left end of the text baseline, pixels in the caller's frame (as ``cv2.putText``).
        color: text colour, (R, G, B).
        scale: OpenCV font scale; 0.4 is about 11 px tall.
    """

    text: str
    x: float
    y: float
    color: Color = (255, 255, 255)
    scale: float = 0.4

    def __post_init__(self) -> None:
        if not (math.isfinite(float(self.x)) and math.isfinite(float(self.y))):
            raise ValueError(f"Text position must be finite pixels, got ({self.x!r}, {self.y!r})")
        if not self.scale > 0:
            raise ValueError(f"Text scale must be > 0, got {self.scale!r}")
        object.__setattr__(self, "color", _check_color(self.color, "Text color"))


def validate_frame(frame: Any, what: str = "frame") -> np.ndarray:
    """Check that ``frame`` is an RGB image and return it as a numpy array (no copy).

    Args:
        frame: array-like of shape (H, W, 3), dtype uint8, H and W >= 1.
        what: name used in the error message.

    Raises:
        ValueError: wrong type, dtype, number of dimensions, channel count or an empty side;
            the message names the received shape and dtype.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(
            f"{what} must be a numpy uint8 array of shape (H, W, 3) RGB, got {type(frame).__name__}"
        )
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(
            f"{what} must have shape (H, W, 3) and dtype uint8 (RGB), got shape {frame.shape} "
            f"and dtype {frame.dtype}"
        )
    return frame


def format_value(value: Any) -> str:
    """Format a metric value for display: thousands separators, 4 significant digits for floats.

    ``12345.6 -> "12,346"``, ``1.25 -> "1.25"``, ``0.000123 -> "1.230e-04"``, ``7 -> "7"``,
    ``True -> "True"``, strings unchanged. numpy scalars are treated like Python numbers.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude != 0 and magnitude < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class OverlayStyle:
    """Font size and spacing for one frame size.

    Attributes:
        font_scale: OpenCV font scale of bar and sidebar text.
        thickness: stroke width of text, pixels.
        ascent: height of capital letters above the baseline, pixels.
        line_height: distance between text baselines in bars and sidebar, pixels.
        pad: inner margin of bars and sidebar, pixels.
        box_thickness: outline width of boxes, pixels.
    """

    font_scale: float
    thickness: int
    ascent: int
    line_height: int
    pad: int
    box_thickness: int

    @classmethod
    def for_frame(cls, height: int, width: int) -> OverlayStyle:
        """Style for a caller frame of ``height`` x ``width`` pixels.

        The font scale grows linearly with the frame (0.4 at 240 px high, 0.8 at 720 px), clamped
        to [0.4, 1.2]; the reference size is ``min(height, 0.75 * width)`` so wide grids do not get
        huge text.
        """
        ref = min(height, 0.75 * width)
        font_scale = float(np.clip(ref / 900.0, 0.4, 1.2))
        thickness = 1 if font_scale < 0.75 else 2
        cv2 = _cv2()
        (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        pad = max(3, round(6 * font_scale))
        return cls(
            font_scale=font_scale,
            thickness=thickness,
            ascent=text_h,
            line_height=text_h + baseline + max(3, round(6 * font_scale)),
            pad=pad,
            box_thickness=1 if ref < 400 else 2,
        )

    def text_width(self, text: str, scale: float | None = None) -> int:
        """Width in pixels of ``text`` drawn at this style (or at font ``scale``)."""
        cv2 = _cv2()
        (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale or self.font_scale, self.thickness)
        return int(w)


def fit_text(text: str, max_width: int, style: OverlayStyle, keep: Literal["start", "end"] = "start") -> str:
    """Shorten ``text`` with ``"..."`` until it is at most ``max_width`` pixels wide.

    Args:
        keep: ``"start"`` keeps the beginning (``"abc..."``), ``"end"`` keeps the end (``"...xyz"``),
            which suits paths and test ids.
    """
    if style.text_width(text) <= max_width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # largest n such that the shortened text fits
        n = (lo + hi + 1) // 2
        candidate = text[:n] + ELLIPSIS if keep == "start" else ELLIPSIS + text[len(text) - n :]
        if style.text_width(candidate) <= max_width:
            lo = n
        else:
            hi = n - 1
    if lo == 0:
        return ELLIPSIS if style.text_width(ELLIPSIS) <= max_width else ""
    return text[:lo] + ELLIPSIS if keep == "start" else ELLIPSIS + text[len(text) - lo :]


def wrap_segments(segments: Sequence[str], max_width: int, style: OverlayStyle) -> list[str]:
    """Pack non-empty ``segments`` greedily into lines joined by ``"  |  "``, each at most ``max_width`` px.

    A segment wider than a whole line gets a line of its own, shortened with ``"..."``.
    """
    lines: list[str] = []
    current = ""
    for segment in (s for s in segments if s):
        candidate = f"{current}{SEPARATOR}{segment}" if current else segment
        if style.text_width(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = fit_text(segment, max_width, style)
    if current:
        lines.append(current)
    return lines


def _put_text(
    img: np.ndarray, text: str, org: tuple[int, int], color: Color, scale: float, thickness: int
) -> None:
    cv2 = _cv2()
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def draw_text(
    img: np.ndarray,
    text: str,
    org: tuple[float, float],
    *,
    color: Color = (255, 255, 255),
    scale: float = 0.4,
    thickness: int = 1,
    background: Color | None = (0, 0, 0),
) -> None:
    """Draw ``text`` in place with its baseline starting at ``org`` = (x, y) pixels.

    Args:
        img: writable (H, W, 3) uint8 RGB image.
        background: colour of a filled backing box around the text, or None for none.
    """
    cv2 = _cv2()
    x, y = round(org[0]), round(org[1])
    if background is not None:
        (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        margin = max(1, round(3 * scale))
        cv2.rectangle(
            img, (x - margin, y - h - margin), (x + w + margin, y + baseline + margin), background, cv2.FILLED
        )
    _put_text(img, text, (x, y), color, scale, thickness)


def _dashed_line(
    img: np.ndarray, a: tuple[int, int], b: tuple[int, int], color: Color, thickness: int
) -> None:
    """Draw a dashed straight line from ``a`` to ``b`` in place; dash and gap are ``4 * thickness + 2`` px."""
    cv2 = _cv2()
    dash = 4 * thickness + 2
    (ax, ay), (bx, by) = a, b
    length = max(abs(bx - ax), abs(by - ay))
    for start in range(0, max(length, 1), 2 * dash):
        end = min(start + dash, length)
        t0, t1 = start / max(length, 1), end / max(length, 1)
        cv2.line(
            img,
            (round(ax + (bx - ax) * t0), round(ay + (by - ay) * t0)),
            (round(ax + (bx - ax) * t1), round(ay + (by - ay) * t1)),
            color,
            thickness,
            cv2.LINE_AA,
        )


def _dashed_rectangle(
    img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color: Color, thickness: int
) -> None:
    """Draw a dashed rectangle outline in place; dash and gap are ``4 * thickness + 2`` px."""
    (x1, y1), (x2, y2) = p1, p2
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    for a, b in itertools.pairwise(corners):
        _dashed_line(img, a, b, color, thickness)


def _label_text_color(color: Color) -> Color:
    """Black or white, whichever reads better on ``color`` (ITU-R BT.601 luma)."""
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_box(img: np.ndarray, box: Box, style: OverlayStyle) -> None:
    """Draw ``box`` in place: outline (solid or dashed) and a filled label tab, clipped to ``img``.

    Solid (prediction) labels sit above the box, dashed (ground-truth) labels below it, so a
    prediction and its ground truth can both be read.

    Args:
        img: writable (H, W, 3) uint8 RGB image whose pixel coordinates the box uses.
        style: gives the outline width and label font size.
    """
    cv2 = _cv2()
    height, width = img.shape[:2]
    x1, x2 = sorted((round(box.x1), round(box.x2)))
    y1, y2 = sorted((round(box.y1), round(box.y2)))
    if x2 < 0 or y2 < 0 or x1 >= width or y1 >= height:
        return  # entirely outside the frame
    t = style.box_thickness
    if box.style == "dashed":
        _dashed_rectangle(img, (x1, y1), (x2, y2), box.color, t)
    else:
        cv2.rectangle(img, (x1, y1), (x2, y2), box.color, t, cv2.LINE_AA)
    caption = box.caption
    if not caption:
        return
    scale = max(0.35, style.font_scale * 0.7)
    thick = 1
    (w, h), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    tab_h = h + baseline + 2
    tab_x = min(max(x1, 0), max(width - w - 2, 0))
    if box.style == "solid":  # predictions: tab above the box, else inside its top edge
        tab_y = y1 - tab_h if y1 - tab_h >= 0 else max(y1, 0)
    else:  # ground truth: tab below the box, else inside its bottom edge, so both labels stay readable
        tab_y = y2 + 1 if y2 + 1 + tab_h <= height else min(y2, height) - tab_h
    cv2.rectangle(img, (tab_x, tab_y), (tab_x + w + 2, tab_y + tab_h), box.color, cv2.FILLED)
    _put_text(img, caption, (tab_x + 1, tab_y + h + 1), _label_text_color(box.color), scale, thick)


@dataclass(frozen=True)
class PanelLayout:
    """Geometry of one composed output frame: header on top, caller frame + sidebar, footer below.

    ::

        +---------------------------------+
        | header (header_lines lines)     |
        +-----------------------+---------+
        | caller frame          | sidebar |
        | frame_h x frame_w     | metrics |
        +-----------------------+---------+
        | footer (footer_lines lines)     |
        +---------------------------------+

    :meth:`for_frame` makes the output width and height even, so H.264 needs no padding.

    Attributes:
        frame_h, frame_w: caller frame size, pixels.
        sidebar_w: sidebar width, pixels.
        header_lines, footer_lines: number of text lines in the bars.
        style: fonts and spacing.
    """

    frame_h: int
    frame_w: int
    sidebar_w: int
    header_lines: int
    footer_lines: int
    style: OverlayStyle

    @classmethod
    def for_frame(cls, height: int, width: int, header_lines: int = 2, footer_lines: int = 2) -> PanelLayout:
        """Layout for a caller frame of ``height`` x ``width`` pixels; the sidebar fits ~20 digits."""
        style = OverlayStyle.for_frame(height, width)
        sidebar_w = style.text_width("0" * 20) + 2 * style.pad
        sidebar_w += (width + sidebar_w) % 2  # even output width, as H.264 yuv420p needs
        return cls(height, width, sidebar_w, header_lines, footer_lines, style)

    @property
    def header_h(self) -> int:
        """Header bar height, pixels."""
        return self.header_lines * self.style.line_height + self.style.pad

    @property
    def footer_h(self) -> int:
        """Footer bar height, pixels; one pixel taller when needed to make :attr:`out_h` even."""
        base = self.footer_lines * self.style.line_height + self.style.pad
        return base + (self.header_h + self.frame_h + base) % 2

    @property
    def out_w(self) -> int:
        """Output frame width, pixels."""
        return self.frame_w + self.sidebar_w

    @property
    def out_h(self) -> int:
        """Output frame height, pixels."""
        return self.header_h + self.frame_h + self.footer_h

    @property
    def origin(self) -> tuple[int, int]:
        """(x, y) of the caller frame's top-left pixel inside the output frame."""
        return (0, self.header_h)

    @property
    def text_width_px(self) -> int:
        """Room for one bar line of text, pixels."""
        return self.out_w - 2 * self.style.pad

    def wrap(self, segments: Sequence[str]) -> list[str]:
        """:func:`wrap_segments` at the width of a bar line."""
        return wrap_segments(segments, self.text_width_px, self.style)


def _draw_lines(
    img: np.ndarray, lines: Sequence[str], top: int, left: int, max_w: int, style: OverlayStyle, color: Color
) -> None:
    s = style
    for i, line in enumerate(lines):
        baseline_y = top + s.pad // 2 + i * s.line_height + (s.line_height - s.ascent) // 2 + s.ascent
        _put_text(img, fit_text(line, max_w, s), (left, baseline_y), color, s.font_scale, s.thickness)


def _fit_line_count(lines: list[str], count: int) -> list[str]:
    """Pad with empty lines or merge the overflow into the last line (shortened when drawn)."""
    if len(lines) <= count:
        return [*lines, *[""] * (count - len(lines))]
    return [*lines[: count - 1], SEPARATOR.join(lines[count - 1 :])]


def _metric_line(key: str, value: str, max_width: int, style: OverlayStyle) -> str:
    """``"key: value"``, shortening the key first so the value stays visible."""
    line = f"{key}: {value}"
    if style.text_width(line) <= max_width:
        return line
    room = max_width - style.text_width(f": {value}")
    if room >= style.text_width("m" * 4 + ELLIPSIS):
        return f"{fit_text(key, room, style)}: {value}"
    return line  # value alone is too wide: shortened at the end when drawn


#: Legend entries drawn at the bottom of the sidebar when a frame has both box styles.
LEGEND_ENTRIES: tuple[tuple[BoxStyle, str], ...] = (("solid", "prediction"), ("dashed", "ground truth"))


def needs_legend(boxes: Sequence[Box]) -> bool:
    """True when ``boxes`` mix solid (prediction) and dashed (ground-truth) boxes."""
    styles = {box.style for box in boxes}
    return len(styles) > 1


def legend_rows(layout: PanelLayout) -> int:
    """Sidebar rows the box-style legend takes: a title and one row per style, or 0 when it cannot fit.

    The legend needs the title row of the metrics list plus its own rows; a sidebar shorter than
    that (a caller frame under about 80 px high) shows no legend.
    """
    rows = max(0, (layout.frame_h - layout.style.pad) // layout.style.line_height)
    need = 1 + len(LEGEND_ENTRIES)
    return need if rows >= need + 1 else 0


def _draw_legend(img: np.ndarray, layout: PanelLayout) -> None:
    """Draw the box-style legend in the bottom rows of the sidebar: a line sample and its meaning.

    The samples are drawn in :data:`FOREGROUND` (box colours are the caller's, per class), with the
    same outline width and dash pattern as :func:`draw_box` uses at this frame size.
    """
    s = layout.style
    n = legend_rows(layout)
    if n == 0:
        return
    x0 = layout.frame_w + s.pad
    width = layout.sidebar_w - 2 * s.pad
    top = layout.header_h + layout.frame_h - n * s.line_height - s.pad // 2
    _draw_lines(img, ["boxes"], top, x0, width, s, MUTED)
    sample_w = max(16, round(3 * s.ascent))
    for i, (box_style, meaning) in enumerate(LEGEND_ENTRIES, start=1):
        row_top = top + i * s.line_height
        baseline_y = row_top + s.pad // 2 + (s.line_height - s.ascent) // 2 + s.ascent
        mid_y = baseline_y - s.ascent // 2
        if box_style == "dashed":
            _dashed_line(img, (x0, mid_y), (x0 + sample_w, mid_y), FOREGROUND, s.box_thickness)
        else:
            _cv2().line(img, (x0, mid_y), (x0 + sample_w, mid_y), FOREGROUND, s.box_thickness, _cv2().LINE_AA)
        text_x = x0 + sample_w + max(s.pad, s.ascent // 2)
        _put_text(
            img, fit_text(meaning, width - (text_x - x0), s), (text_x, baseline_y), FOREGROUND,
            s.font_scale, s.thickness,
        )  # fmt: skip


def _draw_sidebar(
    img: np.ndarray, metrics: Mapping[str, Any], layout: PanelLayout, reserved_rows: int = 0
) -> None:
    s = layout.style
    x0, y0 = layout.frame_w, layout.header_h
    width = layout.sidebar_w - 2 * s.pad
    rows = max(0, (layout.frame_h - s.pad) // s.line_height - reserved_rows)
    if rows == 0:
        return
    lines = [_metric_line(str(key), format_value(value), width, s) for key, value in metrics.items()]
    if len(lines) > rows - 1:  # keep the last row for a "+N more" line
        lines = [*lines[: max(rows - 2, 0)], f"+{len(lines) - max(rows - 2, 0)} more"]
    _draw_lines(img, ["metrics"], y0, x0 + s.pad, width, s, MUTED)
    _draw_lines(img, lines, y0 + s.line_height, x0 + s.pad, width, s, FOREGROUND)


def compose_panels(
    frame: np.ndarray,
    layout: PanelLayout,
    *,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    boxes: Sequence[Box] = (),
    texts: Sequence[Text] = (),
) -> np.ndarray:
    """Return a new output frame: ``frame`` with boxes and texts, a header, a metrics sidebar, a footer.

    Args:
        frame: (layout.frame_h, layout.frame_w, 3) uint8 RGB; not modified.
        layout: geometry, e.g. ``PanelLayout.for_frame(*frame.shape[:2])``.
        header, footer: already wrapped text lines; extra lines are merged into the last one and
            every line is shortened with ``"..."`` to fit.
        metrics: key -> value shown as ``"key: value"`` lines in the sidebar, in order.
        boxes, texts: drawn on the caller-frame region in its own pixel coordinates. When the boxes
            mix solid (prediction) and dashed (ground-truth) styles, a legend of the two line styles
            is drawn at the bottom of the sidebar (:data:`LEGEND_ENTRIES`).

    Returns:
        (layout.out_h, layout.out_w, 3) uint8 RGB array.

    Raises:
        ValueError: ``frame`` is not (H, W, 3) uint8, or its size differs from the layout.
    """
    frame = np.ascontiguousarray(validate_frame(frame))  # OpenCV needs contiguous rows
    if frame.shape[:2] != (layout.frame_h, layout.frame_w):
        raise ValueError(f"frame shape {frame.shape} does not match layout {layout.frame_h}x{layout.frame_w}")
    s = layout.style
    cv2 = _cv2()
    out = cv2.copyMakeBorder(
        frame, layout.header_h, layout.footer_h, 0, layout.sidebar_w, cv2.BORDER_CONSTANT, value=BACKGROUND
    )
    ox, oy = layout.origin
    view = out[oy : oy + layout.frame_h, ox : ox + layout.frame_w]
    for box in boxes:
        draw_box(view, box, s)
    for text in texts:
        draw_text(view, text.text, (text.x, text.y), color=text.color, scale=text.scale)
    legend = needs_legend(boxes)
    _draw_sidebar(out, metrics or {}, layout, reserved_rows=legend_rows(layout) if legend else 0)
    if legend:
        _draw_legend(out, layout)
    _draw_lines(
        out, _fit_line_count(list(header), layout.header_lines), 0, s.pad, layout.text_width_px, s, FOREGROUND
    )
    footer_top = layout.header_h + layout.frame_h
    _draw_lines(
        out,
        _fit_line_count(list(footer), layout.footer_lines),
        footer_top,
        s.pad,
        layout.text_width_px,
        s,
        FOREGROUND,
    )
    return out


def _as_tiles(tiles: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(tiles, np.ndarray):
        if tiles.ndim != 4 or tiles.shape[3] != 3 or tiles.dtype != np.uint8 or 0 in tiles.shape:
            raise ValueError(
                f"tiles must have shape (N, H, W, 3) and dtype uint8, got shape {tiles.shape} "
                f"and dtype {tiles.dtype}"
            )
        return tiles
    tiles = list(tiles)
    if not tiles:
        raise ValueError("compose_grid needs at least one tile, got an empty sequence")
    for i, tile in enumerate(tiles):
        validate_frame(tile, what=f"tile {i}")
        if tile.shape != tiles[0].shape:
            raise ValueError(
                f"all tiles must have the same shape: tile 0 is {tiles[0].shape}, tile {i} is {tile.shape}"
            )
    return np.stack(tiles)


def compose_grid(
    tiles: np.ndarray | Sequence[np.ndarray],
    cols: int | None = None,
    pad: int = 2,
    scale: int = 1,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tile a batch of equal-size views into one image, row-major, with ``pad`` px between tiles.

    Args:
        tiles: (N, H, W, 3) uint8 array, or a sequence of N (H, W, 3) uint8 arrays of one shape.
        cols: tiles per row; default ``ceil(sqrt(N))``.
        pad: gap between neighbouring tiles, pixels (no border around the grid); filled with
            :data:`BACKGROUND`, as are the unused cells of the last row.
        scale: integer nearest-neighbour upscaling factor applied to every tile.

    Returns:
        ``(grid, offsets)``: ``grid`` is (rows*H*scale + (rows-1)*pad, cols*W*scale + (cols-1)*pad, 3)
        uint8 with ``rows = ceil(N / cols)``; ``offsets[i] = (x, y)`` is the top-left pixel of tile
        ``i`` in ``grid``. A point (u, v) of tile i lands at ``(u*scale + x, v*scale + y)``; see
        :meth:`Box.moved`.

    Raises:
        ValueError: bad tile shape/dtype, differing tiles, ``cols < 1``, ``pad < 0`` or ``scale < 1``.
    """
    batch = _as_tiles(tiles)
    n, h, w = batch.shape[:3]
    cols = math.ceil(math.sqrt(n)) if cols is None else int(cols)
    if cols < 1 or pad < 0 or int(scale) != scale or scale < 1:
        raise ValueError(
            f"need cols >= 1, pad >= 0 and an integer scale >= 1, got cols={cols}, pad={pad}, scale={scale}"
        )
    scale = int(scale)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    th, tw = h * scale, w * scale
    grid = background_canvas(rows * th + (rows - 1) * pad, cols * tw + (cols - 1) * pad)
    offsets: list[tuple[int, int]] = []
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = c * (tw + pad), r * (th + pad)
        tile = batch[i] if scale == 1 else batch[i].repeat(scale, axis=0).repeat(scale, axis=1)
        grid[y : y + th, x : x + tw] = tile
        offsets.append((x, y))
    return grid, offsets


def side_by_side(a: np.ndarray, b: np.ndarray, pad: int = 2) -> np.ndarray:
    """Place ``b`` to the right of ``a`` with a ``pad`` px gap; the shorter one is padded at the bottom.

    Args:
        a, b: (H, W, 3) uint8 RGB images; heights may differ.

    Returns:
        (max(Ha, Hb), Wa + pad + Wb, 3) uint8. ``b`` starts at x = ``Wa + pad``, y = 0; gaps are
        :data:`BACKGROUND`.
    """
    a = validate_frame(a, "a")
    b = validate_frame(b, "b")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    height = max(a.shape[0], b.shape[0])
    out = background_canvas(height, a.shape[1] + pad + b.shape[1])
    out[: a.shape[0], : a.shape[1]] = a
    out[: b.shape[0], a.shape[1] + pad :] = b
    return out
