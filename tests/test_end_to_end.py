"""End to end on a few hundred real MNIST images: build, cache, rebuild, render, PDF contents."""

from __future__ import annotations

import contextlib
import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from pypdf import PdfReader

from reportgen.cli import app

from .conftest import EXPLODING_RUN, build_or_fail, copy_project, read_manifest, write_project

pytestmark = pytest.mark.slow
LIMITS = ["--limit-train", "300", "--limit-val", "100"]

FILES = {
    "experiments/1-dense.toml": """
        number = "1"
        title = "Dense nets"
        [defaults]
        kind = "mlp"
        hidden_layers = [16]
        regularizer = "l2"
        [[runs]]
        name = "l2-{strength}"
        [runs.grid]
        strength = [0.0, 0.001]
        [[views]]
        kind = "params_vs_accuracy"
        threshold = 0.5
    """,
    "experiments/1-dense.md": """
        The unregularised net reaches {{ runs["l2-0"].val_accuracy | pct }} with
        {{ runs["l2-0"].params | num }} parameters.
    """,
    "experiments/2-conv.toml": """
        number = "2"
        title = "Convolutions"
        [[runs]]
        name = "conv"
        kind = "cnn"
        blocks = [{ type = "conv", filters = 4, kernel = 3 }, { type = "pool", size = 2 }]
        [[views]]
        kind = "misclassified"
        run = "conv"
        count = 9
    """,
    "experiments/2-conv.md": "The convolutional net misclassifies {{ runs['conv'].misclassified }} images.\n",
}


def build(runner, root: Path, *args: str):
    result = runner.invoke(app, ["build", "-C", str(root), *LIMITS, *args])
    return result


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One real build, shared; tests that change it work on a copy."""
    root = write_project(tmp_path_factory.mktemp("e2e") / "project", dict(FILES))
    return root, build_or_fail(root, LIMITS)


@pytest.fixture
def copy(built, tmp_path):
    return copy_project(built[0], tmp_path)


manifest = read_manifest


def test_build_trains_everything_once_and_says_where_the_report_is(built):
    root, output = built
    assert "3 experiments in 2 sections, data mnist-sample[300/100], profile full; 3 to train." in output
    assert f"Report: {root / 'build' / 'report.html'}" in output
    data = manifest(root)
    assert [e["name"] for e in data["experiments"]] == ["l2-0", "l2-0.001", "conv"]
    assert all(e["state"] == "fresh" and not e["cache_hit"] for e in data["experiments"])
    assert data["data"]["name"] == "mnist-sample[300/100]" and len(data["data"]["fingerprint"]) == 64
    assert data["seeds"] == [3] and data["versions"]["keras"].startswith("3.")


def test_pdf_has_headings_parameter_totals_figures_and_filled_placeholders(built):
    root, _ = built
    reader = PdfReader(root / "build" / "report.pdf")
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    for heading in ("Tiny test report", "Contents", "1 Dense nets", "2 Convolutions"):
        assert heading in text
    # Dense(16) on 784 inputs + Dense(10): 12,560 + 170 parameters, from the summary table.
    assert "12,730" in text
    data = manifest(root)
    key = next(e["key"] for e in data["experiments"] if e["name"] == "l2-0")
    l2_0 = json.loads((root / ".reportgen-cache" / "results" / key / "result.json").read_text())
    assert all(e["device"]["kind"] == "cpu" and e["device"]["name"] for e in data["experiments"])  # each run's
    quoted = f"{l2_0['final']['val_accuracy'] * 100:.2f}%"
    assert f"The unregularised net reaches {quoted} with 12,730 parameters." in text
    # Figures are embedded as vector drawings whose labels are real text in the PDF.
    assert "Trainable parameters (log scale)" in text
    titles = [item["/Title"] for item in reader.outline[1] if isinstance(item, dict)]
    assert titles == ["Contents", "1 Dense nets", "2 Convolutions", "A Runs in detail", "B Provenance"]
    html = (root / "build" / "report.html").read_text()
    # params plot and misclassified grid in the sections; one small-multiples figure per section in the appendix
    assert html.count("<figure>") == 4
    assert "Training and validation accuracy per epoch of each run in section 1, on one scale: l2-0, l2-0.001." in text


def test_answers_come_first_and_each_run_has_one_linked_entry_in_the_appendix(built):
    root, _ = built
    html = (root / "build" / "report.html").read_text()
    appendix = html.index('id="appendix"')
    section_1 = html[html.index('id="sec-1"'):html.index('id="sec-2"')]
    # The section answers: its view's table and commentary; no run's settings or epoch log.
    assert "Final val. accuracy" in section_1 and "The unregularised net reaches" in section_1
    assert "code-cell" not in section_1 and "Val. loss" not in section_1
    # Every run name in its table links to the run's one entry, which is in the appendix.
    for name in ("l2-0", "l2-0.001"):
        link = f'<a class="run" href="#run-{re.escape(name)}"[^>]*><code>{re.escape(name)}</code></a>'
        assert re.search(link, section_1)
        assert html.count(f'id="run-{name}"') == 1 and html.index(f'id="run-{name}"') > appendix
    entry = html[html.index('id="run-l2-0"'):html.index('id="run-l2-0.001"')]
    assert 'regularizer = "l2"' in entry and "hidden_layers = [16]" in entry  # settings as TOML
    assert "Total parameters" in entry and "Val. accuracy" in entry
    # The provenance page holds what the title page no longer does.
    provenance = html[html.index('id="provenance"'):]
    data = manifest(root)
    assert data["data"]["fingerprint"] in provenance and "Seeds" in provenance and "keras" in provenance
    assert data["data"]["fingerprint"][:16] not in html[:appendix]


def test_one_format_per_quantity_in_a_sections_table_and_prose(built):
    root, _ = built
    html = (root / "build" / "report.html").read_text()
    section_1 = html[html.index('id="sec-1"'):html.index('id="sec-2"')]
    prose = section_1[section_1.index('class="commentary"'):]
    quoted = re.search(r"reaches (\d+\.\d\d%) with", prose).group(1)
    row = re.search(r'href="#run-l2-0"[^>]*><code>l2-0</code></a></td><td class="num">12,730</td>\s*'
                    r'<td class="num">([^<]+)</td>', section_1)
    assert row is not None and row.group(1) == quoted  # the table and the prose print the same number


def test_details_inline_or_none_as_a_section_says(runner, copy):
    sections = copy / "experiments"
    (sections / "1-dense.toml").write_text((sections / "1-dense.toml").read_text()
                                           .replace('title = "Dense nets"', 'title = "Dense nets"\ndetails = "inline"'))
    conv = (sections / "2-conv.toml").read_text()
    (sections / "2-conv.toml").write_text(conv.replace('"Convolutions"', '"Convolutions"\ndetails = "none"'))
    result = runner.invoke(app, ["render", "-C", str(copy)])
    assert result.exit_code == 0, result.output
    html = (copy / "build" / "report.html").read_text()
    section_1 = html[html.index('id="sec-1"'):html.index('id="sec-2"')]
    assert 'id="run-l2-0"' in section_1 and "Two line charts of l2-0 over" in section_1  # inline, with its figure
    assert 'id="appendix"' not in html  # no section has its runs there
    assert 'id="run-conv"' not in html and 'href="#run-conv"' not in html  # none: no entry, nothing links to one


def test_rebuild_with_nothing_changed_trains_nothing(runner, copy):
    result = build(runner, copy)
    assert result.exit_code == 0, result.output
    assert "; 0 to train." in result.output
    assert all(e["cache_hit"] for e in manifest(copy)["experiments"])


def test_a_report_whose_inputs_did_not_change_is_not_written_again_and_any_change_rewrites_it(runner, copy):
    assert build(runner, copy).exit_code == 0  # rendered here, in this folder
    pdf, html = copy / "build/report.pdf", copy / "build/report.html"
    stamps = (pdf.stat().st_mtime_ns, html.stat().st_mtime_ns)
    result = build(runner, copy)
    assert "up to date: nothing it is made from changed" in result.output
    assert (pdf.stat().st_mtime_ns, html.stat().st_mtime_ns) == stamps
    # Each of these is a change the report is made from, or damage to what was written: it renders again.
    changes = [lambda: (copy / "templates").mkdir() or (copy / "templates/style.css").write_text("p { color: red }"),
               lambda: pdf.unlink(),
               lambda: (copy / "build/assets/style.css").write_text("tampered"),
               lambda: (copy / "experiments/1-dense.md").write_text("Rewritten.\n")]
    for change in changes:
        change()
        result = runner.invoke(app, ["render", "-C", str(copy)])
        assert result.exit_code == 0 and "up to date" not in result.output, result.output
        assert "up to date" in runner.invoke(app, ["render", "-C", str(copy)]).output
    assert "Rewritten." in html.read_text() and pdf.is_file()


def test_commentary_change_retrains_nothing_and_shows_the_new_text(runner, copy):
    (copy / "experiments/2-conv.md").write_text("Edited: {{ runs['conv'].params | num }} parameters.\n")
    result = build(runner, copy)
    assert "; 0 to train." in result.output
    # Conv2D(4, 3x3): 40, then 14*14*4 = 784 inputs to Dense(10): 7,850.
    assert "Edited: 7,890 parameters." in (copy / "build/report.html").read_text()


def test_changed_lambda_retrains_that_run_only_and_status_says_why(runner, copy):
    toml = copy / "experiments/1-dense.toml"
    toml.write_text(toml.read_text().replace("0.001]", "0.002]"))
    status = runner.invoke(app, ["status", "-C", str(copy)])
    assert status.exit_code == 0, status.output
    assert "l2-0.002" in status.output and "missing" in status.output
    assert "2 fresh, 0 stale, 1 missing" in status.output
    # Same name, new value: the reason names the setting that changed.
    conv = copy / "experiments/2-conv.toml"
    conv.write_text(conv.read_text().replace("filters = 4", "filters = 6"))
    status = runner.invoke(app, ["status", "-C", str(copy)])
    assert "conv" in status.output and "stale" in status.output
    assert "blocks changed:" in status.output and "'filters': 6" in status.output
    conv.write_text(conv.read_text().replace("filters = 6", "filters = 4"))
    toml.write_text(FILES_DENSE_CHANGED)
    result = build(runner, copy)
    assert result.exit_code == 0, result.output
    assert "; 1 to train." in result.output and "l2-0.002" in result.output
    hits = {e["name"]: e["cache_hit"] for e in manifest(copy)["experiments"]}
    assert hits == {"l2-0": True, "l2-0.002": False, "conv": True}


FILES_DENSE_CHANGED = "\n".join(line.strip() for line in FILES["experiments/1-dense.toml"].replace(
    "0.001]", "0.002]").splitlines()) + "\n"


def test_render_never_trains_and_marks_missing_results(runner, copy):
    (copy / "experiments/2-conv.toml").write_text(
        (copy / "experiments/2-conv.toml").read_text().replace("filters = 4", "filters = 5"))
    entries = len(list((copy / ".reportgen-cache/results").iterdir()))
    result = runner.invoke(app, ["render", "-C", str(copy)])
    assert result.exit_code == 0, result.output
    assert "; 0 to train." in result.output
    assert len(list((copy / ".reportgen-cache/results").iterdir())) == entries
    html = (copy / "build/report.html").read_text()
    assert "No result for this configuration yet (filters" not in html  # reasons speak of the key
    assert "No result for this configuration yet" in html
    # its earlier result is cached under the old configuration: not "no result yet"
    assert "placeholder 'conv' has no result for its current configuration (blocks changed: " in html
    assert "experiments/2-conv.md" in html and str(copy) not in html


def test_typo_in_a_placeholder_fails_the_build_with_file_and_line(runner, copy):
    (copy / "experiments/1-dense.md").write_text("ok\n{{ runs['l2-O'].val_accuracy }}\n")
    result = build(runner, copy)
    assert result.exit_code == 1
    assert f"Error: {copy / 'experiments/1-dense.md'}:2: unknown placeholder 'l2-O'" in result.output
    assert "did you mean 'l2-0'?" in result.output


def test_empty_slot_is_a_visible_box_and_strict_fails(runner, copy):
    (copy / "experiments/2-conv.md").write_text("")
    result = build(runner, copy)
    assert result.exit_code == 0
    assert "commentary slot is empty" in result.output
    assert 'class="slot-missing">Commentary slot <code>2-conv.md</code>' in (copy / "build/report.html").read_text()
    strict = build(runner, copy, "--strict")
    assert strict.exit_code == 1 and "--strict: the report has warnings" in strict.output


def test_diverging_and_failing_runs_are_marked_and_the_report_still_builds(runner, make_project):
    root = make_project({
        "experiments/a.toml": textwrap.dedent("""
            number = "1"
            title = "Trouble"
            [[runs]]
            name = "broken"
            kind = "custom"
            builder = "nets:broken"
        """) + EXPLODING_RUN,
        "experiments/a.md": "Some text.\n",
        "experiments/nets.py": "def broken():\n    raise ValueError('no such layer')\n",
    })
    result = runner.invoke(app, ["build", "-C", str(root), *LIMITS])
    assert result.exit_code == 3, result.output
    assert "explodes: diverged at epoch 1" in result.output
    assert ("broken: failed: RunError: experiment 'broken' failed: builder nets:broken raised ValueError"
            in result.output)
    html = (root / "build/report.html").read_text()
    assert "Training diverged at epoch 1" in html
    assert "This run failed: RunError" in html
    assert (root / "build/report.pdf").stat().st_size > 0
    states = {e["name"]: (e["state"], e["status"]) for e in manifest(root)["experiments"]}
    assert states == {"explodes": ("fresh", "diverged"), "broken": ("failed", None)}


def test_results_export_has_one_row_per_experiment_with_metrics_and_configuration(built):
    import csv

    root, _ = built
    results = json.loads((root / "build" / "results.json").read_text())
    assert results["data"]["name"] == "mnist-sample[300/100]" and results["profile"] == "full"
    by_name = {r["name"]: r for r in results["experiments"]}
    assert list(by_name) == ["l2-0", "l2-0.001", "conv"]
    key = by_name["l2-0"]["key"]
    stored = json.loads((root / ".reportgen-cache" / "results" / key / "result.json").read_text())
    assert by_name["l2-0"]["val_accuracy"] == stored["final"]["val_accuracy"]
    assert by_name["l2-0"]["params"] == 12_730 and by_name["l2-0.001"]["config"]["strength"] == 0.001
    assert by_name["conv"]["history"]["epoch"] == [1]
    with open(root / "build" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["l2-0", "l2-0.001", "conv"]
    assert float(rows[0]["val_accuracy"]) == stored["final"]["val_accuracy"]
    assert rows[2]["kind"] == "cnn" and json.loads(rows[2]["config"])["blocks"][0]["filters"] == 4


def test_every_figure_in_the_tagged_pdf_has_alt_text_written_from_its_data(built):
    import pikepdf

    from tests.report.test_pdf import figure_alts

    root, _ = built
    with pikepdf.open(root / "build" / "report.pdf") as pdf:
        assert pdf.Root.MarkInfo.Marked and pdf.Root.Lang == "en" and pdf.Root.ViewerPreferences.DisplayDocTitle
        alts = figure_alts(pdf)
    assert len(alts) == 4 and all(alts)  # the four figures of the HTML, each with its alt text
    results = {e["name"]: e for e in json.loads((root / "build" / "results.json").read_text())["experiments"]}
    best = max(("l2-0", "l2-0.001"), key=lambda n: results[n]["val_accuracy"])  # the first, on a tie
    scatter = next(a for a in alts if a.startswith("Scatter plot"))
    assert f"the best is {best} at {results[best]['val_accuracy'] * 100:.2f}%" in scatter
    grid = next(a for a in alts if a.startswith("Grid of the"))
    assert "misclassified validation images (of 100) of conv" in grid and " read as " in grid


def _browser():
    """Debian's chromium, headless, through its chromedriver (.ci/run installs both)."""
    import shutil as sh

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = sh.which("chromium"), sh.which("chromedriver")
    assert binary and driver, "the browser checks need chromium and chromedriver on PATH (apt-get install " \
                              "chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.binary_location = binary
    return webdriver.Chrome(service=Service(driver), options=options)


@contextlib.contextmanager
def _previewing(root: Path, *args: str, stop_within: float = 30):
    """`reportgen preview` in a process of its own, and a headless browser on the page it serves.
    Yields a dict with the page's "url" and the "browser"; on leaving, the browser closes, the
    process gets Ctrl-C, and the dict gains its exit "code" and the "stop_seconds" it took."""
    import signal
    import subprocess
    import sys
    import time

    server = subprocess.Popen([sys.executable, "-m", "reportgen", "preview", "-C", str(root), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "400"})
    live: dict = {}
    try:
        for line in server.stdout:  # the first build, then the address it serves on
            if "Serving" in line:
                live["url"] = re.search(r"http://127\.0\.0\.1:\d+/report\.html", line).group(0)
                break
        assert "url" in live, "preview printed no address"
        live["browser"] = _browser()
        live["browser"].get(live["url"])
        yield live
    finally:
        if "browser" in live:
            live["browser"].quit()
        server.send_signal(signal.SIGINT)
        started = time.monotonic()
        live["code"] = server.wait(stop_within)
        live["stop_seconds"] = time.monotonic() - started


LOADED = """
const images = [...document.images].filter(i => i.getClientRects().length);
return {images: images.length, broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        headings: [...document.querySelectorAll('h1, h2, h3')].map(h => parseFloat(getComputedStyle(h).fontSize)),
        body: parseFloat(getComputedStyle(document.querySelector('p')).fontSize)};
"""


@pytest.mark.browser
@pytest.mark.parametrize("self_contained", [False, True], ids=["with-assets", "self-contained"])
def test_the_html_report_loads_every_image_and_never_scrolls_sideways_on_a_desktop_or_a_phone(runner, copy,
                                                                                            self_contained):
    args = ["render", "-C", str(copy)] + (["--self-contained"] if self_contained else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = copy / "build" / "report.html"
    if self_contained:  # one file: it loads the same wherever it is moved to, without its folder
        page = page.rename(copy / "moved.html")
        assert "assets/" not in page.read_text()
    browser = _browser()
    try:
        for width in (1280, 420):
            browser.set_window_size(width, 900)
            browser.get(page.as_uri())
            seen = browser.execute_script(LOADED)
            assert seen["images"] == 4 and seen["broken"] == [], (width, seen)
            assert seen["overflow"] <= 0, f"the page scrolls sideways by {seen['overflow']} px at {width} px"
            assert min(seen["headings"]) > seen["body"]  # no heading smaller than the text
    finally:
        browser.quit()


@pytest.mark.browser
def test_preview_reloads_the_open_page_on_an_edit_shows_a_bad_edit_and_stops_on_ctrl_c(copy):
    import http.client
    from urllib.parse import urlsplit

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _previewing(copy) as live:
        browser, url = live["browser"], live["url"]
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        assert "Dense nets" in body() and "Live preview" in body()
        browser.execute_script("window.loadedBefore = true")

        (copy / "experiments/2-conv.md").write_text("A sentence written while the page is open.\n")
        WebDriverWait(browser, 15).until(lambda _: "A sentence written while the page is open." in body())
        assert browser.execute_script("return window.loadedBefore === undefined")  # the page reloaded itself

        section = copy / "experiments/2-conv.toml"
        good = section.read_text()
        section.write_text(good + "\nepochs = \n")
        WebDriverWait(browser, 15).until(lambda _: "could not be built" in body())
        assert "2-conv.toml:" in body() and "invalid TOML" in body()
        assert "A sentence written while the page is open." in body()  # the last good report stays

        parts = urlsplit(url)
        cached_figure = next((copy / "build" / ".figures").glob("*.svg")).name  # exists, but is not the report's
        for path in ("/../experiments/2-conv.toml", "/%2e%2e/experiments/2-conv.toml", f"/.figures/{cached_figure}"):
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            connection.request("GET", path)
            assert connection.getresponse().status == 404, path
            connection.close()
    assert live["code"] == 130 and live["stop_seconds"] < 30
    assert not list((copy / "build").glob(".*.tmp"))  # nothing half-written left behind


@pytest.mark.browser
def test_preview_with_train_trains_a_stale_run_in_the_background_and_the_open_page_shows_its_result(copy):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    section = copy / "experiments/1-dense.toml"
    section.write_text(section.read_text().replace("[0.0, 0.001]", "[0.0, 0.002]"))  # l2-0.002 has no result
    with _previewing(copy, "--train", stop_within=60) as live:
        browser = live["browser"]
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        banner = browser.find_elements(By.ID, "reportgen-stale")
        if banner:  # the run may already have landed while the browser started
            assert "l2-0.002" in banner[0].text and "training in the background" in banner[0].text
        # The run trains in its own process with the last build's image limits, lands in the cache,
        # and the open page reloads with it: no banner, and its row in the section's table.
        WebDriverWait(browser, 240).until(lambda _: not browser.find_elements(By.ID, "reportgen-stale"))
        row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr") if "l2-0.002" in r.text)
        assert re.search(r"\d+\.\d\d%", row.text), row.text
        assert "no result" not in body()
    assert live["code"] == 130
    assert "l2-0.002" in (copy / "build" / "preview-training.log").read_text()
