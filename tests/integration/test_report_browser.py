"""The migration report (index.html) in a real browser: headless Chromium opens the page report_files builds
from a report directory (the trimmed real reports of tests/unit/fixtures/report plus an earlier rehearsal in the
history) and every section and figure must render, with no console error and no network request.

Saves a full-page screenshot to tests/output/report.png."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time

import pytest

from ansible_collections.pgshift.aurora.plugins.action import report_files as rf
from ansible_collections.pgshift.aurora.plugins.plugin_utils import report_render


HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "unit", "fixtures", "report")
OUTPUT = os.path.join(HERE, "..", "output")

SECTIONS = ("phases", "assessment", "plan", "load", "lag", "validation", "timelines", "history", "rollback")
FIGURES = ("fig-plan", "fig-load", "fig-lag", "fig-gantt-rehearsal", "fig-gantt-cutover", "fig-history")


def earlier_rehearsal():
    """The fixture's rehearsal as if run an hour before, slower (its steps twice as long)."""
    with open(os.path.join(FIXTURES, "rehearsal.json"), encoding="utf-8") as handle:
        r = json.load(handle)
    r = copy.deepcopy(r)
    r["started_at"], r["run_id"] = "2026-12-06T09:50:03Z", "0123abcd4567"
    for e in r["timeline"]:
        e["at"], e["seconds"] = round(e["at"] * 2, 3), round(e["seconds"] * 2, 3)
    r["write_pause_seconds"], r["total_seconds"] = r["write_pause_seconds"] * 2, r["total_seconds"] * 2
    return r


@pytest.fixture
def report_dir(tmp_path):
    directory = tmp_path / "reports"
    shutil.copytree(FIXTURES, directory)
    old = earlier_rehearsal()
    (directory / "rehearsals").mkdir()
    (directory / "rehearsals" / ("%s" % report_render.ri.history_name(old))).write_text(json.dumps(old))
    written = rf.write_index(str(directory), "inventories/lab/hosts.yml")
    assert str(directory / "index.html") in written and str(directory / "runbook.md") in written
    # The current rehearsal was kept next to the earlier one.
    assert len(os.listdir(directory / "rehearsals")) == 2
    return directory


def assert_renders(driver, index, sections, figures, screenshot):
    """Open index (a path) in the browser: every section of `sections` shown with a heading and its data (no "not
    run yet"), every figure of `figures` drawn (paths with a size, texts inside the figure), no broken image, nothing
    fetched but the page, no console error or warning; saves a full-page screenshot under tests/output.
    Returns the page's visible text."""
    from selenium.webdriver.common.by import By

    url = index.as_uri()
    driver.get(url)
    assert driver.title.startswith("Migration ")
    for section in SECTIONS:
        element = driver.find_element(By.ID, section)
        assert element.is_displayed(), section
        assert element.find_element(By.TAG_NAME, "h2").text.strip(), section
        if section in sections:
            assert "not run yet" not in element.text, "%s: %s" % (section, element.text[:200])
    for figure in figures:
        svg = driver.find_element(By.CSS_SELECTOR, "#%s svg" % figure)
        box = driver.execute_script("var b = arguments[0].getBBox(); var r = arguments[0].getBoundingClientRect();"
                                    "return [b.width, b.height, r.width, r.height];", svg)
        assert all(v > 0 for v in box), (figure, box)
        # its axes and its data: at least the ticks, one shape of data and the spines, each drawn with a size,
        # and its words laid out inside the figure
        paths = driver.execute_script(
            "return Array.from(arguments[0].querySelectorAll('path')).map(p => { var b = p.getBBox();"
            " return b.width + b.height; });", svg)
        assert len(paths) >= 3 and all(size > 0 for size in paths), (figure, paths)
        texts = driver.execute_script(
            "var s = arguments[0].getBoundingClientRect(); return Array.from(arguments[0].querySelectorAll('text'))"
            ".map(t => { var r = t.getBoundingClientRect(); return [t.textContent, r.width, r.left >= s.left - 1 &&"
            " r.right <= s.right + 1 && r.top >= s.top - 1 && r.bottom <= s.bottom + 1,"
            " [r.left - s.left, s.right - r.right, r.top - s.top, s.bottom - r.bottom]]; });", svg)
        assert len(texts) > 3, figure
        # what is wrong, by its text and its distance to each edge of the figure (left, right, top, bottom)
        assert [t for t in texts if not (t[1] > 0 and t[2])] == [], (figure, svg.get_attribute("outerHTML"))
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);")
    assert broken == []
    entries = driver.execute_script("return performance.getEntries().map(e => [e.entryType, e.name]);")
    assert [e for e in entries if e[0] in ("navigation", "resource")] == [["navigation", url]], entries
    errors = [entry for entry in driver.get_log("browser") if entry.get("level") in ("SEVERE", "WARNING")]
    assert errors == []
    text = driver.find_element(By.TAG_NAME, "body").text
    os.makedirs(OUTPUT, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, height + 100)
    time.sleep(0.2)  # let the resize lay out before the screenshot (not an assertion)
    assert driver.save_screenshot(os.path.join(OUTPUT, screenshot))
    return text


def test_every_section_and_figure_renders_offline(report_dir, driver):
    from selenium.webdriver.common.by import By

    # every section but the phases table and the timelines, which list the phases not run (no rollback here)
    text = assert_renders(driver, report_dir / "index.html",
                          [s for s in SECTIONS if s not in ("phases", "timelines")], FIGURES, "report.png")
    assert driver.title.startswith("Migration shipping")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.figure")) == len(FIGURES)
    # What the page says, from the reports (names that need quoting are shown as they are).
    assert "max_slot_wal_keep_size" in text and "fix: cap it below the free WAL disk space" in text
    # (the plan's table list is folded: its text is in the page, not on screen)
    assert '"Shipping Ops"."Audit Log"' in driver.execute_script("return document.body.textContent")
    assert "the plan holds" in text
    assert "ansible-playbook pgshift.aurora.rollback -i inventories/lab/hosts.yml" in text
    history_rows = driver.find_elements(By.CSS_SELECTOR, "#history table tbody tr")
    assert len(history_rows) == 2


def test_a_missing_figure_is_caught(report_dir, driver):
    """The check above can fail: without the lag CSV the lag section says 'not run yet' and has no figure."""
    from selenium.webdriver.common.by import By

    os.remove(report_dir / "replication-lag.csv")
    rf.write_index(str(report_dir), None)
    driver.get((report_dir / "index.html").as_uri())
    assert not driver.find_elements(By.CSS_SELECTOR, "#fig-lag svg")
    assert "not run yet" in driver.find_element(By.ID, "lag").text


def test_figures_of_data_on_one_spot_render(report_dir, driver):
    """Data a real run gives but the fixture does not: a stream of empty tables loaded in no time (0 rows at 0 s
    and at its end), a lag polled twice at the same second with the same values, steps of 0 s in the rehearsal.
    Every figure still draws only paths with a size (CI's site run once met an empty line path)."""
    replication = json.loads((report_dir / "replication.json").read_text())
    replication["loads"].append(dict(changed=True, stream="pgshift_shipping_s3", load=dict(
        bytes=0, rows=0, rows_per_second=0.0, seconds=0.0, tables=[], units=0, workers=1)))
    (report_dir / "replication.json").write_text(json.dumps(replication))
    with open(report_dir / "replication-lag.csv", "a", encoding="utf-8") as handle:
        handle.write("0.1,pgshift_shipping_s3,streaming,0,0.0,0,0,0,100.0\n"
                     "0.1,pgshift_shipping_s3,streaming,0,0.0,0,0,0,100.0\n")
    rehearsal = json.loads((report_dir / "rehearsal.json").read_text())
    for entry in rehearsal["timeline"][:3]:
        entry["seconds"] = 0.0
    (report_dir / "rehearsal.json").write_text(json.dumps(rehearsal))
    rf.write_index(str(report_dir), "inventories/lab/hosts.yml")
    page = (report_dir / "index.html").read_text()
    assert "pgshift_shipping_s3" in page
    assert_renders(driver, report_dir / "index.html", [s for s in SECTIONS if s not in ("phases", "timelines")],
                   FIGURES, "report-one-spot.png")


def test_the_last_tick_label_of_a_short_wait_stays_in_the_figure(report_dir, driver):
    """Waits of a fast lab end at 0.125 s: the x axis's last label, '0.125', is centred on the plot's right edge
    and needs more room than a short one (CI's site run once drew it past the figure's edge)."""
    rows = ["elapsed_seconds,stream,state,lag_bytes,lag_seconds,retained_bytes,rows_copied,bytes_copied,load_percent"]
    for at, lag in ((0.0, 736), (0.0625, 1472), (0.125, 736)):
        for stream in ("pgshift_shipping_s1", "pgshift_shipping_s2"):
            rows.append("%s,%s,streaming,%d,0.01,14456,1000,100000,100.0" % (at, stream, lag))
    (report_dir / "replication-lag.csv").write_text("\n".join(rows) + "\n")
    rf.write_index(str(report_dir), "inventories/lab/hosts.yml")
    assert ">0.125</text>" in (report_dir / "index.html").read_text()
    assert_renders(driver, report_dir / "index.html", [s for s in SECTIONS if s not in ("phases", "timelines")],
                   FIGURES, "report-short-wait.png")


def test_a_plan_of_billions_of_rows_under_a_long_name_stays_in_its_figure(report_dir, driver):
    """A migration name of 40 characters and a stream of 2 billion rows in 1,200 tables: the annotation at the end
    of the longest bar ends inside the figure (the axis is widened for it)."""
    plan = json.loads((report_dir / "plan.json").read_text())
    for number, stream in enumerate(plan["streams"], 1):
        stream["name"] = "pgshift_%s_s%d" % ("a" * 40, number)
        stream["rows"], stream["table_count"] = 2000000000, 1200
    (report_dir / "plan.json").write_text(json.dumps(plan))
    rf.write_index(str(report_dir), "inventories/lab/hosts.yml")
    assert " 1200 tables, 2,000,000,000 rows" in (report_dir / "index.html").read_text()
    assert_renders(driver, report_dir / "index.html", [s for s in SECTIONS if s not in ("phases", "timelines")],
                   FIGURES, "report-billions.png")
