# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small SVG charts drawn without a plotting library: the figures of the migration report (report_render.py).

A chart is a grid of panels; a panel holds lines with markers, vertical and horizontal bars, bands, vertical
rules and texts in data coordinates, with numeric or categorical axes. render() lays the panels out and writes
one <svg> element: shapes are <path> elements, words are <text> elements in the page's font, every text is
XML-escaped, and the same data gives the same bytes (no dates, coordinates rounded, the only ids those of the
panels' clip paths, named after the chart). Sizes are in the viewBox's units (pixels at 100 %); the page scales
the figure. Nothing here reads files or imports anything but the standard library: drawing a report's figures
takes milliseconds, where importing matplotlib alone took a second of the phase's last task.
"""

from __future__ import annotations

import html
import math
import re

FONT = 11.0  # axis labels and titles
TICK_FONT = 10.0
SMALL_FONT = 9.0  # legends and texts placed in a panel
CHAR = 0.58  # average advance of a sans-serif glyph, in font sizes: for the layout only
AXIS_COLOR = "#444444"
GRID_COLOR = "#e6e6e6"
CLIP_PAD = 5.0  # what is drawn may pass its panel's edges by this much (a marker on an edge stays whole)
MAX_LABEL_SHARE = 0.42  # a category label may take this share of its panel's width, then it is cut (with a title)


def esc(value):
    """XML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def text_width(text, size):
    """An estimate of the width of `text` at font size `size` (the widest line)."""
    return max(len(line) for line in str(text).split("\n")) * size * CHAR


def fmt(value):
    """A coordinate: two decimals at most, no trailing zeros, never "-0"."""
    text = ("%.2f" % value).rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(lo, hi, count=5):
    """Round values every `step` from at or below `lo` to at or above `hi`, about `count` intervals:
    (ticks, step). An empty or flat range becomes [lo, lo + 1] (or around lo when it is not zero)."""
    lo = float(lo) if lo is not None and math.isfinite(lo) else 0.0
    hi = float(hi) if hi is not None and math.isfinite(hi) else lo + 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12 * max(1.0, abs(lo)):
        pad = abs(lo) * 0.1 if lo else 1.0
        lo, hi = (lo - pad if lo else lo), hi + pad
    raw = (hi - lo) / max(1, count)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = 10.0 * magnitude
    for multiple in (1.0, 2.0, 2.5, 5.0):
        if multiple * magnitude >= raw * (1 - 1e-9):
            step = multiple * magnitude
            break
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round((first + i) * step, 12) for i in range(int(last - first) + 1)], step


def _decimals(value):
    for places in range(7):
        if abs(round(value, places) - value) <= 1e-9 * max(1.0, abs(value)):
            return places
    return 6


def tick_labels(ticks, step):
    """Tick texts with the unit the largest needs (k, M, G) and the decimals the step needs: 2.5M, 750k, 0.25."""
    top = max([abs(t) for t in ticks] + [0.0])
    unit, suffix = 1.0, ""
    for threshold, size, name in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if top >= threshold:
            unit, suffix = size, name
            break
    places = _decimals(step / unit)
    return ["%s%s" % (fmt_number(t / unit, places), suffix if t else "") for t in ticks]


def fmt_number(value, places):
    text = "%.*f" % (places, value)
    return "0" if float(text) == 0 else text


class Panel:
    """One plot area: what is drawn in it, in data coordinates, and its axes."""

    def __init__(self):
        self.items = []
        self.title = self.xlabel = self.ylabel = None
        self.xlim = [None, None]
        self.ylim = [None, None]
        self.xcats = self.ycats = None
        self.legend_at = None
        self.legend_columns = 1
        self.show_xticks = self.show_yticks = True

    # What is drawn ------------------------------------------------------------------------------------------
    def line(self, xs, ys, color, dash=None, marker=None, label=None, width=1.5, marker_size=3.5):
        """A polyline through (xs, ys), with a marker at each point: o . x D v (or None)."""
        points = [(float(x), float(y)) for x, y in zip(xs, ys)]
        self.items.append(dict(kind="line", points=points, color=color, dash=dash, marker=marker, label=label,
                               width=width, size=marker_size))

    def bars(self, xs, heights, color, bottoms=None, width=0.6, label=None):
        """Vertical bars centred on xs (categories 0, 1, ...), from bottoms (0) up by heights."""
        bottoms = bottoms or [0.0] * len(heights)
        self.items.append(dict(kind="bars", xs=[float(x) for x in xs], heights=[float(h) for h in heights],
                               bottoms=[float(b) for b in bottoms], color=color, width=width, label=label))

    def hbars(self, ys, widths, colors, lefts=None, height=0.6):
        """Horizontal bars centred on ys (categories 0, 1, ..., the first on top), from lefts (0) by widths; one
        colour each (a list) or one for all."""
        lefts = lefts or [0.0] * len(widths)
        colors = colors if isinstance(colors, (list, tuple)) else [colors] * len(widths)
        self.items.append(dict(kind="hbars", ys=[float(y) for y in ys], widths=[float(w) for w in widths],
                               lefts=[float(v) for v in lefts], colors=list(colors), height=height))

    def band(self, x0, x1, color, opacity=0.12, label=None):
        """A vertical band from x0 to x1, the panel's full height."""
        self.items.append(dict(kind="band", x0=float(x0), x1=float(x1), color=color, opacity=opacity, label=label))

    def rule(self, x, color, dash=None, width=1.0):
        """A vertical line at x, the panel's full height."""
        self.items.append(dict(kind="rule", x=float(x), color=color, dash=dash, width=width))

    def text(self, x, y, text, size=SMALL_FONT):
        """A text starting at (x, y), centred vertically on y."""
        self.items.append(dict(kind="text", x=float(x), y=float(y), text=str(text), size=size))

    def legend(self, at="best", columns=1):
        """A legend of the labelled items: upper right, upper left, lower left, lower right, or best (the corner
        where it hides the least of what is drawn)."""
        self.legend_at, self.legend_columns = at, max(1, int(columns))

    # Extents ------------------------------------------------------------------------------------------------
    def data_range(self, axis):
        values = []
        for item in self.items:
            kind = item["kind"]
            if kind == "line":
                values.extend(p[0 if axis == "x" else 1] for p in item["points"])
            elif kind == "bars" and axis == "y":
                values.extend(b + h for b, h in zip(item["bottoms"], item["heights"]))
                values.extend(item["bottoms"])
            elif kind == "hbars" and axis == "x":
                values.extend(v + w for v, w in zip(item["lefts"], item["widths"]))
                values.extend(item["lefts"])
            elif kind == "band" and axis == "x":
                values.extend((item["x0"], item["x1"]))
            elif kind == "rule" and axis == "x":
                values.append(item["x"])
        values = [v for v in values if math.isfinite(v)]
        return (min(values), max(values)) if values else (None, None)

    def labelled(self):
        return [i for i in self.items if i.get("label") is not None and i["kind"] in ("line", "bars", "band")]


def _axis(limits, data, cats):
    """(lo, hi, ticks, labels) of one axis."""
    if cats is not None:
        return -0.5, len(cats) - 0.5, list(range(len(cats))), [str(c) for c in cats]
    lo = limits[0] if limits[0] is not None else data[0]
    hi = limits[1] if limits[1] is not None else data[1]
    if lo is None:
        lo = 0.0
    if hi is None:
        hi = lo + 1.0
    ticks, step = nice_ticks(lo, hi)
    lo = limits[0] if limits[0] is not None else ticks[0]
    hi = limits[1] if limits[1] is not None and limits[1] > lo else max(ticks[-1], lo + step)
    ticks = [t for t in ticks if lo - 1e-9 * step <= t <= hi + 1e-9 * step]
    return lo, hi, ticks, tick_labels(ticks, step)


def edge_label_half(labels):
    """Half the width of the last tick label, which is centred on the axis' end (the widest of its lines)."""
    return text_width(labels[-1], TICK_FONT) / 2.0 if labels else 0.0


def label_step(labels, width):
    """Label every n-th tick, n the smallest that keeps the labels of a `width` wide axis from overlapping."""
    if len(labels) < 2:
        return 1
    slot = width / float(len(labels))
    widest = max(text_width(label, TICK_FONT) for label in labels) + 6
    return max(1, int(math.ceil(widest / slot - 1e-9)))


def _cut(label, width, size):
    """The label, cut with an ellipsis to fit `width`: (text, cut)."""
    room = max(4, int(width / (size * CHAR) + 1e-6))
    return (label, False) if len(label) <= room else (label[:room - 1] + "\u2026", True)


def _marker(kind, x, y, size):
    """The path data of one marker, and whether it is drawn filled."""
    r = size
    if kind in ("o", "."):
        r = size if kind == "o" else max(1.5, size * 0.55)
        return "M%s %sa%s %s 0 1 0 %s 0a%s %s 0 1 0 -%s 0Z" % (
            fmt(x - r), fmt(y), fmt(r), fmt(r), fmt(2 * r), fmt(r), fmt(r), fmt(2 * r)), True
    if kind == "x":
        return "M%s %sL%s %sM%s %sL%s %s" % (fmt(x - r), fmt(y - r), fmt(x + r), fmt(y + r), fmt(x - r),
                                             fmt(y + r), fmt(x + r), fmt(y - r)), False
    if kind == "D":
        return "M%s %sL%s %sL%s %sL%s %sZ" % (fmt(x), fmt(y - r), fmt(x + r), fmt(y), fmt(x), fmt(y + r),
                                              fmt(x - r), fmt(y)), True
    if kind == "v":
        return "M%s %sL%s %sL%s %sZ" % (fmt(x - r), fmt(y - r * 0.8), fmt(x + r), fmt(y - r * 0.8), fmt(x),
                                        fmt(y + r * 0.9)), True
    raise ValueError("unknown marker %r" % (kind,))


def bar_rects(item, px, py):
    """The rectangles (x0, y0, x1, y1, colour) in the figure of a bars or hbars item, with px and py the panel's
    mapping of data to figure coordinates; a bar of no height is left out, one too thin to see is 1 unit wide."""
    rects = []
    if item["kind"] == "bars":
        half = item["width"] / 2.0
        for x, h, b in zip(item["xs"], item["heights"], item["bottoms"]):
            if h:
                rects.append(sorted((px(x - half), px(x + half))) + sorted((py(b), py(b + h))) + [item["color"]])
    else:
        half = item["height"] / 2.0
        for y, w, left, color in zip(item["ys"], item["widths"], item["lefts"], item["colors"]):
            x0, x1 = sorted((px(left), px(left + w)))
            rects.append([x0, max(x1, x0 + 1)] + sorted((py(y - half), py(y + half))) + [color])
    return [(x0, y0, x1, y1, color) for x0, x1, y0, y1, color in rects]


def _rect_path(x0, y0, x1, y1):
    return "M%s %sH%sV%sH%sZ" % (fmt(x0), fmt(y0), fmt(x1), fmt(y1), fmt(x0))


def label_lines(labels):
    """How many lines the tallest of these tick labels takes."""
    return max([len(str(label).split("\n")) for label in labels] + [1])


def _markers(d, color, filled):
    """The path of markers (path data d): filled, or stroked for those drawn as lines (x)."""
    paint = 'fill="%s"' % color if filled else 'stroke="%s" stroke-width="1.5" fill="none"' % color
    return '<path d="%s" %s/>' % (d, paint)


def _dash(dash):
    return {None: "", "--": ' stroke-dasharray="5 3"', ":": ' stroke-dasharray="1.5 2.5"'}[dash]


def _text(x, y, text, size, anchor="start", color="#222222", extra=""):
    lines = str(text).split("\n")
    if len(lines) == 1:
        return '<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s>%s</text>' % (
            fmt(x), fmt(y), fmt(size), anchor, color, extra, esc(text))
    spans = "".join('<tspan x="%s" dy="%s">%s</tspan>' % (fmt(x), fmt(0 if i == 0 else size * 1.15), esc(line))
                    for i, line in enumerate(lines))
    return '<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s>%s</text>' % (
        fmt(x), fmt(y), fmt(size), anchor, color, extra, spans)


class Chart:
    """A figure: a grid of panels, rendered as one <svg> element."""

    def __init__(self, name, width, height):
        self.name, self.width, self.height = str(name), float(width), float(height)
        self.rows = self.cols = 1
        self.ratios = [1.0]
        self.sharex = self.sharey = False
        self.panels = [Panel()]

    def grid(self, rows=1, cols=1, width_ratios=None, sharex=False, sharey=False):
        """rows x cols panels, row by row; shared axes are drawn with the same limits and labelled once."""
        self.rows, self.cols = int(rows), int(cols)
        self.ratios = [float(r) for r in (width_ratios or [1.0] * self.cols)]
        self.sharex, self.sharey = sharex, sharey
        self.panels = [Panel() for dummy in range(self.rows * self.cols)]
        for index, panel in enumerate(self.panels):
            if sharey and index % self.cols:
                panel.show_yticks = False
            if sharex and index // self.cols < self.rows - 1:
                panel.show_xticks = False
        return self.panels

    # Layout -------------------------------------------------------------------------------------------------
    def _axes(self):
        """Each panel's (x axis, y axis), shared axes made common."""
        axes = []
        for panel in self.panels:
            axes.append([_axis(panel.xlim, panel.data_range("x"), panel.xcats),
                         _axis(panel.ylim, panel.data_range("y"), panel.ycats)])
        for share, which in ((self.sharex, 0), (self.sharey, 1)):
            if not share or len(self.panels) < 2:
                continue
            lo = min(a[which][0] for a in axes)
            hi = max(a[which][1] for a in axes)
            panel = self.panels[0]
            limits = [lo, hi]
            cats = panel.xcats if which == 0 else panel.ycats
            common = _axis(limits, (lo, hi), cats)
            for a in axes:
                a[which] = common
        return axes

    def _cell_widths(self):
        return [self.width * r / sum(self.ratios) for r in self.ratios]

    def _cell_left(self, index):
        """The left edge of panel `index`'s cell in the grid."""
        return sum(self._cell_widths()[:index % self.cols])

    def _boxes(self, axes):
        """Each panel's plot area (x, y, width, height) in the figure."""
        cell_w = self._cell_widths()
        cell_h = self.height / self.rows
        lefts = [0.0] * self.cols
        for index, panel in enumerate(self.panels):
            col = index % self.cols
            yaxis = axes[index][1]
            labels = yaxis[3] if panel.show_yticks else []
            widest = max([text_width(t, TICK_FONT) for t in labels] + [0.0])
            widest = min(widest, cell_w[col] * MAX_LABEL_SHARE)
            left = 8 + (widest + 6 if labels else 0) + (FONT + 6 if panel.ylabel else 0)
            lefts[col] = max(lefts[col], left)
        boxes = []
        for index, panel in enumerate(self.panels):
            row, col = divmod(index, self.cols)
            x0 = self._cell_left(index)
            tick_lines = label_lines(axes[index][0][3]) if panel.show_xticks else 0
            top = (10 if row == 0 else 16) + (FONT + 8 if panel.title else 0)
            bottom = 6 + tick_lines * TICK_FONT * 1.15 + (6 if tick_lines else 0) + (FONT + 6 if panel.xlabel else 0)
            if not tick_lines and not panel.xlabel:
                bottom = 10
            # the last tick of a numeric x axis is on the plot's right edge, its label centred there: room for its half
            right = 12.0
            if tick_lines and panel.xcats is None:
                right = max(right, edge_label_half(axes[index][0][3]) + 3)
            box_x = x0 + lefts[col]
            box_y = row * cell_h + top
            boxes.append((box_x, box_y, max(20.0, cell_w[col] - lefts[col] - right),
                          max(20.0, cell_h - top - bottom)))
        return boxes

    # Drawing ------------------------------------------------------------------------------------------------
    def _fit_texts(self, axes, boxes):
        """Widen numeric x axes so that each text a caller placed in a panel ends inside its plot (an annotation
        at the end of the longest bar, a billion rows long); True when an axis changed."""
        wanted = {}
        for index, panel in enumerate(self.panels):
            bx, by, bw, bh = boxes[index]
            lo, hi = axes[index][0][0], axes[index][0][1]
            if panel.xcats is not None:
                continue
            for item in panel.items:
                room = bw - 3 - text_width(item["text"], item["size"]) if item["kind"] == "text" else None
                if room is not None and room > 0 and item["x"] > lo:
                    wanted[index] = max(wanted.get(index, hi), lo + (item["x"] - lo) * bw / room)
        if self.sharex and wanted:
            wanted = dict.fromkeys(range(len(self.panels)), max(wanted.values()))
        changed = False
        for index, hi in wanted.items():
            if hi > axes[index][0][1]:
                axes[index][0] = _axis([axes[index][0][0], hi], (axes[index][0][0], hi), None)
                changed = True
        return changed

    def render(self):
        axes = self._axes()
        boxes = self._boxes(axes)
        for dummy in range(2):  # a wider axis's last label may narrow the plot: fit once more
            if not self._fit_texts(axes, boxes):
                break
            boxes = self._boxes(axes)
        out = ['<svg class="figure" role="img" aria-label="%s" viewBox="0 0 %s %s" '
               'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,-apple-system,\'Segoe UI\',Roboto,'
               'sans-serif">' % (esc(self.name), fmt(self.width), fmt(self.height))]
        # What is drawn stays in its panel (a value below a limit set at 0 is cut at the axis, as plotting libraries
        # do), with room for a marker that sits on an edge. The ids are the chart's name and the panel's number: the
        # page has one chart of each name.
        out.append("<defs>%s</defs>" % "".join(
            '<clipPath id="%s"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath>' % (
                self._clip_id(index), fmt(bx - CLIP_PAD), fmt(by - CLIP_PAD), fmt(bw + 2 * CLIP_PAD),
                fmt(bh + 2 * CLIP_PAD)) for index, (bx, by, bw, bh) in enumerate(boxes)))
        for index, ((xaxis, yaxis), box) in enumerate(zip(axes, boxes)):
            out.extend(self._panel(index, xaxis, yaxis, box))
        out.append("</svg>")
        return "".join(out)

    def _clip_id(self, index):
        return "clip-%s-%d" % (re.sub(r"[^A-Za-z0-9_-]", "_", self.name), index)

    def _panel(self, index, xaxis, yaxis, box):
        panel = self.panels[index]
        bx, by, bw, bh = box
        xlo, xhi = xaxis[0], xaxis[1]
        ylo, yhi = yaxis[0], yaxis[1]

        def px(x):
            return bx + (x - xlo) / ((xhi - xlo) or 1.0) * bw

        def py(y):
            if panel.ycats is not None:  # the first category on top
                return by + (y - ylo) / ((yhi - ylo) or 1.0) * bh
            return by + bh - (y - ylo) / ((yhi - ylo) or 1.0) * bh

        out = []
        # grid and ticks
        grid, ticks = [], []
        if panel.ycats is None:
            for t in yaxis[2]:
                grid.append("M%s %sH%s" % (fmt(bx), fmt(py(t)), fmt(bx + bw)))
        if grid:
            out.append('<path d="%s" stroke="%s" stroke-width="1" fill="none"/>' % ("".join(grid), GRID_COLOR))
        for t in xaxis[2]:
            ticks.append("M%s %sv4" % (fmt(px(t)), fmt(by + bh)))
        for t in yaxis[2]:
            ticks.append("M%s %sh-4" % (fmt(bx), fmt(py(t))))
        out.append('<path d="%s" stroke="%s" stroke-width="1" fill="none"/>' % ("".join(ticks), AXIS_COLOR))
        # what is drawn, bands first, texts last
        order = dict(band=0, bars=1, hbars=1, line=2, rule=3)
        out.append('<g clip-path="url(#%s)">' % self._clip_id(index))
        for item in sorted((i for i in panel.items if i["kind"] != "text"), key=lambda i: order[i["kind"]]):
            out.extend(self._item(item, px, py, box))
        out.append("</g>")
        for item in panel.items:  # texts last, not cut: they are placed by the caller
            if item["kind"] == "text":
                out.extend(self._item(item, px, py, box))
        # spines (left and bottom)
        out.append('<path d="M%s %sV%sH%s" stroke="%s" stroke-width="1" fill="none"/>' % (
            fmt(bx), fmt(by), fmt(by + bh), fmt(bx + bw), AXIS_COLOR))
        # tick labels
        if panel.show_xticks:
            every = label_step(xaxis[3], bw)
            for number, (t, label) in enumerate(zip(xaxis[2], xaxis[3])):
                if number % every == 0:
                    out.append(_text(px(t), by + bh + 6 + TICK_FONT, label, TICK_FONT, "middle"))
        if panel.show_yticks:
            room = bx - 8 - (FONT + 6 if panel.ylabel else 0) - 6
            for t, label in zip(yaxis[2], yaxis[3]):
                text, cut = _cut(label, room, TICK_FONT)
                drawn = _text(bx - 7, py(t) + TICK_FONT * 0.35, text, TICK_FONT, "end")
                # a label cut to fit keeps its whole text as a tooltip
                out.append('<g><title>%s</title>%s</g>' % (esc(label), drawn) if cut else drawn)
        # labels and title
        if panel.title:
            out.append(_text(bx + bw / 2, by - 7, panel.title, FONT, "middle"))
        if panel.xlabel:
            lines = label_lines(xaxis[3]) if panel.show_xticks else 0
            out.append(_text(bx + bw / 2, by + bh + 12 + lines * TICK_FONT * 1.15 + FONT * 0.8, panel.xlabel, FONT,
                             "middle"))
        if panel.ylabel:
            x = self._cell_left(index) + 4 + FONT * 0.8
            out.append(_text(x, by + bh / 2, panel.ylabel, FONT, "middle",
                             extra=' transform="rotate(-90 %s %s)"' % (fmt(x), fmt(by + bh / 2))))
        if panel.legend_at and panel.labelled():
            out.extend(self._legend(panel, box, px, py))
        return out

    @staticmethod
    def _item(item, px, py, box):
        by, bh = box[1], box[3]
        kind = item["kind"]
        if kind == "band":
            x0, x1 = sorted((px(item["x0"]), px(item["x1"])))
            return ['<path d="M%s %sH%sV%sH%sZ" fill="%s" fill-opacity="%s"/>' % (
                fmt(x0), fmt(by), fmt(max(x1, x0 + 0.5)), fmt(by + bh), fmt(x0), item["color"], item["opacity"])]
        if kind == "rule":
            return ['<path d="M%s %sV%s" stroke="%s" stroke-width="%s" fill="none"%s/>' % (
                fmt(px(item["x"])), fmt(by), fmt(by + bh), item["color"], fmt(item["width"]), _dash(item["dash"]))]
        if kind == "bars":  # one path for the item (one colour)
            d = "".join(_rect_path(*rect[:4]) for rect in bar_rects(item, px, py))
            return ['<path d="%s" fill="%s"/>' % (d, item["color"])] if d else []
        if kind == "hbars":  # a path per bar (a colour each)
            return ['<path d="%s" fill="%s"/>' % (_rect_path(*rect[:4]), rect[4]) for rect in bar_rects(item, px, py)]
        if kind == "line":
            points = [(px(x), py(y)) for x, y in item["points"]]
            out = []
            coords = ["%s %s" % (fmt(x), fmt(y)) for x, y in points]
            if len(set(coords)) > 1:  # a line whose points all fall on one spot draws only its markers
                d = "M" + "L".join(coords)
                out.append('<path d="%s" stroke="%s" stroke-width="%s" fill="none" stroke-linejoin="round"%s/>' % (
                    d, item["color"], fmt(item["width"]), _dash(item["dash"])))
            if item["marker"]:
                shapes = [_marker(item["marker"], x, y, item["size"]) for x, y in points]
                d = "".join(s[0] for s in shapes)
                filled = shapes[0][1] if shapes else True
                out.append(_markers(d, item["color"], filled))
            return out
        if kind == "text":
            return [_text(px(item["x"]) + 3, py(item["y"]) + item["size"] * 0.35, item["text"], item["size"])]
        raise ValueError("unknown item %r" % (kind,))

    @staticmethod
    def _legend(panel, box, px, py):
        bx, by, bw, bh = box
        entries = panel.labelled()
        columns = min(panel.legend_columns, len(entries))
        rows = int(math.ceil(len(entries) / float(columns)))
        size = SMALL_FONT
        col_w = max(text_width(e["label"], size) for e in entries) + 30
        width, height = col_w * columns + 8, rows * size * 1.5 + 8
        corners = {}
        for at in LEGEND_CORNERS:
            corners[at] = (bx + bw - width - 6 if at.endswith("right") else bx + 6,
                           by + 6 if at.startswith("upper") else by + bh - height - 6)
        at = panel.legend_at
        if at == "best":
            at = min(LEGEND_CORNERS, key=lambda c: (hidden(panel, (corners[c][0], corners[c][1], width, height), px,
                                                           py), LEGEND_CORNERS.index(c)))
        x0, y0 = corners[at]
        out = ['<path d="M%s %sh%sv%sh-%sZ" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>' % (
            fmt(x0), fmt(y0), fmt(width), fmt(height), fmt(width))]
        for index, entry in enumerate(entries):
            row, col = divmod(index, columns)
            x = x0 + 6 + col * col_w
            y = y0 + 4 + size * 0.75 + row * size * 1.5
            if entry["kind"] == "line":
                out.append('<path d="M%s %sh18" stroke="%s" stroke-width="%s" fill="none"%s/>' % (
                    fmt(x), fmt(y), entry["color"], fmt(entry["width"]), _dash(entry["dash"])))
                if entry["marker"]:
                    shape, filled = _marker(entry["marker"], x + 9, y, min(entry["size"], 3.5))
                    out.append(_markers(shape, entry["color"], filled))
            else:
                opacity = ' fill-opacity="%s"' % entry["opacity"] if entry["kind"] == "band" else ""
                out.append('<path d="M%s %sh18v%sh-18Z" fill="%s"%s/>' % (
                    fmt(x), fmt(y - size * 0.4), fmt(size * 0.8), entry["color"], opacity))
            out.append(_text(x + 24, y + size * 0.35, entry["label"], size))
        return out


LEGEND_CORNERS = ("upper right", "upper left", "lower left", "lower right")


def _overlap(a, b):
    """The area two rectangles (x, y, width, height) share."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def hidden(panel, rect, px, py):
    """How much of what `panel` draws a legend at `rect` would hide: the area of bars under it, plus the points
    of lines under it (each line sampled along its segments) weighted as a small area each."""
    score = 0.0
    for item in panel.items:
        if item["kind"] in ("bars", "hbars"):
            for x0, y0, x1, y1, dummy in bar_rects(item, px, py):
                score += _overlap(rect, (x0, y0, x1 - x0, y1 - y0))
        elif item["kind"] in ("line", "text"):
            points = item["points"] if item["kind"] == "line" else [(item["x"], item["y"])]
            pixels = [(px(x), py(y)) for x, y in points]
            samples = list(pixels)
            for (xa, ya), (xb, yb) in zip(pixels, pixels[1:]):
                samples.extend((xa + (xb - xa) * k / 10.0, ya + (yb - ya) * k / 10.0) for k in range(1, 10))
            score += 40.0 * sum(1 for x, y in samples
                                if rect[0] <= x <= rect[0] + rect[2] and rect[1] <= y <= rect[1] + rect[3])
    return score
