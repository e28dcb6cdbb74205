"""svg_chart: the report's figures without a plotting library (ticks, labels, layout, escaping, legends)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.pgshift.aurora.plugins.plugin_utils import svg_chart as sc

NS = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("lo, hi, ticks, step", [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2),
    (0, 217.5, [0, 50, 100, 150, 200, 250], 50),
    (0, 20000000, [0, 5e6, 1e7, 1.5e7, 2e7], 5e6),
    (0, 0.0125, [0, 0.0025, 0.005, 0.0075, 0.01, 0.0125], 0.0025),
    (0.1, 0.4, [0.1, 0.2, 0.3, 0.4], 0.1),
    (-3, 7, [-4, -2, 0, 2, 4, 6, 8], 2),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2),  # flat at zero: 0..1
    (5, 5, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6], 0.2),  # flat elsewhere: around the value
    (None, None, [0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2),
])
def test_nice_ticks_cover_the_range_with_round_steps(lo, hi, ticks, step):
    got, got_step = sc.nice_ticks(lo, hi)
    assert got_step == pytest.approx(step)
    assert got == pytest.approx(ticks)


def test_nice_ticks_reversed_range():
    assert sc.nice_ticks(10, 0) == sc.nice_ticks(0, 10)


def test_tick_labels_use_a_unit_and_the_decimals_of_the_step():
    assert sc.tick_labels([0, 5e6, 1e7, 1.5e7, 2e7], 5e6) == ["0", "5M", "10M", "15M", "20M"]
    assert sc.tick_labels([0, 2.5e5, 5e5, 7.5e5, 1e6, 1.25e6], 2.5e5) == [
        "0", "0.25M", "0.50M", "0.75M", "1.00M", "1.25M"]
    assert sc.tick_labels([0, 0.0025, 0.005], 0.0025) == ["0", "0.0025", "0.0050"]
    assert sc.tick_labels([0, 25000, 50000], 25000) == ["0", "25k", "50k"]
    assert sc.tick_labels([-2, 0, 2], 2) == ["-2", "0", "2"]
    assert sc.tick_labels([0, 2e9], 1e9) == ["0", "2G"]


def test_fmt_rounds_and_never_writes_minus_zero():
    assert sc.fmt(1.0) == "1" and sc.fmt(1.256) == "1.26" and sc.fmt(-0.001) == "0" and sc.fmt(-2.5) == "-2.5"


def parse(svg):
    root = ET.fromstring(svg)
    assert root.tag == NS + "svg"
    return root


def line_chart(label="s1"):
    chart = sc.Chart("load", 750, 320)
    left, right = chart.grid(1, 2, sharey=True)
    left.line([0, 10], [0, 1000000], "#1f77b4", dash="--", marker="o", label=label)
    right.line([0, 5, 9], [0, 400000, 2000000], "#1f77b4", marker="x", label=label)
    left.title, left.xlabel, left.ylabel = "load jobs", "seconds", "rows"
    left.ylim = [0, None]
    right.ylim = [0, None]
    left.legend()
    return chart


def test_a_chart_is_well_formed_svg_of_paths_and_texts():
    svg = line_chart().render()
    root = parse(svg)
    assert root.get("class") == "figure" and root.get("role") == "img" and root.get("aria-label") == "load"
    assert root.get("viewBox") == "0 0 750 320" and "width" not in root.attrib
    paths = root.findall(NS + "path")
    texts = [t.text for t in root.iter(NS + "text")]
    assert len(paths) > 5 and "load jobs" in texts and "seconds" in texts and "rows" in texts
    assert "s1" in texts  # the legend
    # the only ids: each panel's clip path, named after the chart
    assert re.findall(r'\bid="([^"]*)"', svg) == ["clip-load-0", "clip-load-1"]
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_what_is_drawn_is_cut_at_the_panel_and_texts_are_not():
    """A value below a limit set at 0 (a lag a clock skew makes negative) does not run under the axis."""
    chart = sc.Chart("lag figure", 600, 300)
    ax = chart.panels[0]
    ax.line([0, 1, 2], [0.01, -0.5, 0.02], "#1f77b4", marker=".")
    ax.text(1, 0.01, "a note")
    ax.ylim = [0, None]
    root = parse(chart.render())
    clip = root.find("%sdefs/%sclipPath" % (NS, NS))
    assert clip.get("id") == "clip-lag_figure-0"
    rect = clip.find(NS + "rect")
    group = root.find("%sg[@clip-path='url(#clip-lag_figure-0)']" % NS)
    assert group is not None and len(group.findall(NS + "path")) == 2  # the line and its markers
    assert "a note" not in [t.text for t in group.iter(NS + "text")]
    assert "a note" in [t.text for t in root.iter(NS + "text")]
    # the clip box is the plot area with 5 units of room: the -0.5 point lies far below it
    bottom = float(rect.get("y")) + float(rect.get("height"))
    points = [float(v) for v in re.findall(r"[ML][0-9.]+ ([0-9.]+)", group.find(NS + "path").get("d"))]
    assert max(points) > bottom + 50


def test_the_same_data_gives_the_same_bytes():
    assert line_chart().render() == line_chart().render()


def test_shared_y_axis_is_common_and_labelled_once():
    svg = line_chart().render()
    texts = [t.text for t in parse(svg).iter(NS + "text")]
    # the right panel's 2 M rows set the common range; its tick labels are not repeated on the right
    assert texts.count("2.0M") == 1 and texts.count("0") >= 2


def test_every_text_is_escaped():
    svg = line_chart(label='<b>"Ops" & co</b>').render()
    assert "<b>" not in svg and "&lt;b&gt;&quot;Ops&quot; &amp; co&lt;/b&gt;" in svg
    assert [t.text for t in parse(svg).iter(NS + "text")].count('<b>"Ops" & co</b>') == 1


def test_category_labels_are_cut_to_fit_with_the_full_text_as_a_title():
    chart = sc.Chart("gantt", 750, 200)
    ax = chart.panels[0]
    long = "7 return_path (check) " + "x" * 300
    ax.hbars([0, 1], [1.0, 2.0], ["#4c72b0", "#999999"], lefts=[0.0, 1.0])
    ax.ycats = ["1 preflight", long]
    svg = chart.render()
    root = parse(svg)
    titles = [t.text for t in root.iter(NS + "title")]
    assert titles == [long]
    texts = [t.text for t in root.iter(NS + "text")]
    assert "1 preflight" in texts and any(t.endswith("\u2026") and t.startswith("7 return_path") for t in texts)


def test_a_label_exactly_as_wide_as_the_widest_is_not_cut():
    chart = sc.Chart("gantt", 750, 200)
    ax = chart.panels[0]
    ax.hbars([0, 1], [1.0, 2.0], "#4c72b0")
    ax.ycats = ["7 return_path", "8 switch"]
    root = parse(chart.render())
    assert [t.text for t in root.iter(NS + "title")] == []
    assert "7 return_path" in [t.text for t in root.iter(NS + "text")]


def test_multi_line_tick_labels_are_tspans():
    chart = sc.Chart("history", 750, 340)
    ax = chart.panels[0]
    ax.bars([0, 1], [0.3, 0.2], "#1f77b4", label="freeze")
    ax.xcats = ["#1\n09:50:03", "#2\n10:50:03"]
    root = parse(chart.render())
    spans = [s.text for s in root.iter(NS + "tspan")]
    assert spans == ["#1", "09:50:03", "#2", "10:50:03"]


def test_x_labels_that_would_overlap_are_thinned_out():
    labels = ["#%d\n10:47:36" % (i + 1) for i in range(7)]
    assert sc.label_step(labels, 500) == 1
    assert sc.label_step(labels, 200) == 2  # 7 slots of 28.6 for labels 52.2 wide (with their margin)
    assert sc.label_step(["x"], 10) == 1
    chart = sc.Chart("history", 300, 300)
    ax = chart.panels[0]
    ax.bars(list(range(7)), [1] * 7, "#8172b2")
    ax.xcats = labels
    spans = [s.text for s in parse(chart.render()).iter(NS + "tspan")]
    assert spans[::2] == ["#1", "#3", "#5", "#7"]


def test_the_best_legend_corner_hides_the_least():
    # a line from the lower left to the upper right: the upper left and lower right corners are free; a tall bar
    # on the left then leaves only the lower right
    def legend_x(chart):
        svg = chart.render()
        boxes = re.findall(r'<path d="M([0-9.]+) ([0-9.]+)h[0-9.]+v[0-9.]+h-[0-9.]+Z" fill="#ffffff"', svg)
        assert len(boxes) == 1
        return float(boxes[0][0]), float(boxes[0][1])

    chart = sc.Chart("c", 600, 300)
    ax = chart.panels[0]
    ax.line([0, 10], [0, 10], "#000000", label="diagonal")
    ax.legend()
    x, y = legend_x(chart)
    assert x < 300 and y < 150  # upper left

    ax.bars([1], [10], "#ff0000", width=2, label="bar")
    x, y = legend_x(chart)
    assert x > 300 and y > 150  # lower right


def test_markers_and_unknown_items():
    for marker in ("o", ".", "x", "D", "v"):
        d, filled = sc._marker(marker, 10, 10, 3)
        assert d.startswith("M") and filled == (marker != "x")
    with pytest.raises(ValueError):
        sc._marker("*", 0, 0, 3)


def test_an_empty_panel_still_draws_its_axes():
    chart = sc.Chart("empty", 300, 200)
    root = parse(chart.render())
    assert len(root.findall(NS + "path")) >= 2


def drawn_extent(d):
    """The width plus height of what a path of straight segments (M, L, H, V) draws; None for other paths."""
    if re.search(r"[^MLHVZ0-9. -]", d):
        return None
    xs, ys, x, y = [], [], 0.0, 0.0
    for command, args in re.findall(r"([MLHVZ])([^MLHVZ]*)", d):
        values = [float(v) for v in args.split()]
        if command in "ML":
            x, y = values
        elif command == "H":
            x = values[0]
        elif command == "V":
            y = values[0]
        xs.append(x)
        ys.append(y)
    return max(xs) - min(xs) + max(ys) - min(ys)


def test_a_line_on_one_spot_draws_its_markers_and_no_empty_path():
    """A stream of empty tables loaded in no time: 0 rows at 0 s and at its end. A browser gives an empty path
    no box; the line is left out and its markers are drawn."""
    chart = sc.Chart("load", 750, 320)
    ax = chart.panels[0]
    ax.line([0, 0], [0, 0], "#1f77b4", dash="--", marker="o", label="empty")
    ax.line([0, 10], [0, 1000], "#ff7f0e", marker="o", label="full")
    ax.legend()
    root = parse(chart.render())
    paths = [p.get("d") for p in root.iter(NS + "path")]
    extents = [drawn_extent(d) for d in paths]
    assert all(e is None or e > 0 for e in extents), list(zip(paths, extents))
    strokes = [p for p in root.iter(NS + "path") if p.get("stroke") == "#1f77b4"]
    fills = [p for p in root.iter(NS + "path") if p.get("fill") == "#1f77b4"]
    assert fills and all("a" in p.get("d") for p in fills)  # its markers (circles)
    assert len(strokes) == 1 and "L" not in strokes[0].get("d")  # only its legend sample, a short dash
    assert drawn_extent("M1 1L1 1") == 0 and drawn_extent("M1 1H5V3Z") == 6


def test_the_last_x_tick_label_has_room_at_the_right_edge():
    """A numeric x axis ends on a tick whose label is centred on the plot's right edge: the figure keeps room for
    its half, as estimated (a long label such as '0.125' took more than the 12 units a short one needs)."""
    chart = sc.Chart("lag", 600, 300)
    chart.panels[0].line([0, 0.0625, 0.125], [1, 2, 1], "#1f77b4", marker=".")
    root = parse(chart.render())
    labels = [t for t in root.iter(NS + "text") if t.get("text-anchor") == "middle" and t.text == "0.125"]
    assert len(labels) == 1
    half = sc.text_width("0.125", sc.TICK_FONT) / 2
    assert float(labels[0].get("x")) + half <= 600 - 2
    # a category axis keeps its 12 units: its last label sits half a slot inside the edge
    cats = sc.Chart("bars", 600, 300)
    cats.panels[0].bars([0, 1], [1, 2], "#1f77b4")
    cats.panels[0].xcats = ["a", "a long category"]
    spines = [re.fullmatch(r"M[\d.]+ [\d.]+V[\d.]+H([\d.]+)", p.get("d")) for p in parse(cats.render()).iter(NS + "path")]
    assert [float(m.group(1)) for m in spines if m] == [588.0]


def test_a_text_placed_at_the_end_of_the_data_ends_inside_the_plot():
    """The plan's annotation at the end of its longest bar ('1200 tables, 2,000,000,000 rows'): the x axis is
    widened until the text, as estimated, ends inside the plot; a short text leaves the axis as it was."""
    def render(text):
        chart = sc.Chart("plan", 750, 200)
        ax = chart.panels[0]
        ax.hbars([0], [100.0], ["#1f77b4"])
        ax.text(100.0, 0, text)
        ax.ycats = ["pgshift_" + "a" * 40 + "_s1"]
        ax.xlim = [0, 145.0]
        root = parse(chart.render())
        spines = [re.fullmatch(r"M[\d.]+ [\d.]+V[\d.]+H([\d.]+)", p.get("d")) for p in root.iter(NS + "path")]
        right = [float(m.group(1)) for m in spines if m][0]
        label = [t for t in root.iter(NS + "text") if t.text == text][0]
        ticks = [t.text for t in root.iter(NS + "text") if t.get("text-anchor") == "middle"]
        return float(label.get("x")) + sc.text_width(text, sc.SMALL_FONT), right, ticks
    end, right, ticks = render(" 1 tables, 10 rows")
    assert end <= right and ticks == ["0", "50", "100"]  # the 145 asked, as it was
    end, right, ticks = render(" 1200 tables, 2,000,000,000 rows")
    assert end <= right and float(ticks[-1]) > 145  # the axis goes further than the 145 asked
