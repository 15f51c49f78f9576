"""The grader's commands: compare two builds, verify one by re-running it, check its claims."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import build_or_fail, copy_project, write_project

LIMITS = ["--limit-train", "300", "--limit-val", "100"]

SECTION = """
number = "1"
title = "Two small nets"

[[runs]]
name = "small"
kind = "mlp"
hidden_layers = [16]

[[runs]]
name = "{second}"
kind = "mlp"
hidden_layers = {layers}
"""

COMMENTARY = """
The small net reaches {{ runs.small.val_accuracy | pct(1) }} with {{ runs.small.params | num }} parameters.
"""


def project_files(second: str = "wide", layers: str = "[32]", extra: str = "") -> dict[str, str]:
    return {"experiments/1-nets.toml": SECTION.format(second=second, layers=layers) + extra,
            "experiments/1-nets.md": COMMENTARY}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Project A, and B: the same but `wide` is wider and a third run `extra` is added."""
    a = write_project(tmp_path_factory.mktemp("a") / "project", project_files())
    extra = '\n[[runs]]\nname = "extra"\nkind = "mlp"\nhidden_layers = [8]\n'
    b = write_project(tmp_path_factory.mktemp("b") / "project", project_files(layers="[64]", extra=extra))
    build_or_fail(a, LIMITS)
    build_or_fail(b, LIMITS)
    return {"a": a, "b": b}


def rows_of(output: str) -> dict[str, str]:
    """The table row of each experiment in compare's or verify's output, by name."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)]
        if len(cells) > 3 and cells[2]:
            found.setdefault(cells[2], line)
    return found


# --- compare -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_a_build_with_itself_agrees(builds: dict[str, Path], runner) -> None:
    from reportgen.cli import app

    result = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(builds["a"] / "build" / "manifest.json")])
    assert result.exit_code == 0, result.output
    assert "agree within tolerance (2 same)" in result.output
    assert "Made the same way" in result.output
    from reportgen.grade.compare import environment_of, load_build

    made = environment_of(load_build(builds["a"] / "build"))
    assert made["data"] == "mnist-sample[300/100] (300 train / 100 validation)"
    assert made["limits"] == "train 300 images, val 100 images"


@pytest.mark.slow
def test_compare_marks_changed_added_and_unchanged(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    page = tmp_path / "cmp.html"
    result = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(builds["b"] / "build"),
                                 "--html", str(page)])
    assert result.exit_code == 1, result.output
    rows = rows_of(result.output)
    assert "same" in rows["small"]
    assert "changed" in rows["wide"]
    assert "added" in rows["extra"]
    assert "hidden_layers: [32] -> [64]" in result.output
    # params of the changed run are shown with the difference: 784*32+32+32*10+10 vs the 64-wide net
    assert "25,450" in rows["wide"] or "25,450" in result.output
    assert "The builds differ (1 same, 1 changed, 1 added)" in result.output

    html = page.read_text()
    assert "The builds differ (1 same, 1 changed, 1 added)" in html
    assert html.count("data:image/svg+xml;base64,") == 1  # the curves of the one changed run
    assert "state-added" in html and "state-changed" in html

    only = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(builds["b"] / "build"), "--only-changed"])
    assert only.exit_code == 1
    assert "small" not in rows_of(only.output) and "wide" in rows_of(only.output)


@pytest.mark.slow
def test_compare_refuses_a_table_across_data_sets(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    manifest = json.loads((builds["a"] / "build" / "manifest.json").read_text())
    manifest["data"].update(name="mnist", fingerprint="0" * 64, train=60000, validation=10000)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(other)])
    assert result.exit_code == 1, result.output
    assert "built on different data sets" in result.output
    assert "Experiments" not in result.output  # no misleading metric table


@pytest.mark.parametrize("content, message", [
    (None, "no manifest.json here"),
    ("{not json", "cannot be read as JSON"),
    ('{"tool": {"name": "other"}}', "not a reportgen manifest"),
    ('{"tool": {"name": "reportgen"}, "experiments": [{"name": "x", "metrics": {"params": "many"}}]}',
     "must be numbers"),
])
@pytest.mark.slow
def test_compare_bad_input_exits_2(builds: dict[str, Path], runner, tmp_path: Path, content: str | None,
                                   message: str) -> None:
    from reportgen.cli import app

    target = tmp_path / "missing"
    if content is not None:
        target = tmp_path / "manifest.json"
        target.write_text(content)
    result = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(target)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(target) in result.output.replace("\n", "")


# --- verify ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_verify_reproduces_an_untouched_build(builds: dict[str, Path], runner) -> None:
    from reportgen.cli import app

    result = runner.invoke(app, ["verify", str(builds["b"] / "build"), "--sample", "2", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "Chosen at random with seed 7" in result.output
    assert "All 2 verified experiments reproduce within tolerance" in result.output
    assert result.output.count("bit-identical weights") >= 2  # same machine, same seeds


@pytest.mark.slow
def test_verify_fails_on_a_tampered_metric(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    path = root / "build" / "manifest.json"
    manifest = json.loads(path.read_text())
    entry = next(e for e in manifest["experiments"] if e["name"] == "wide")
    entry["metrics"]["val_accuracy"] = round((entry["metrics"]["val_accuracy"] + 0.5) % 1, 4)
    path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(root / "build"), "--only", "wide"])
    assert result.exit_code == 1, result.output
    assert "differs" in rows_of(result.output)["wide"]
    assert "1 of 1 experiment(s) do not reproduce: wide" in result.output


@pytest.mark.slow
def test_verify_notices_results_json_edited(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    path = root / "build" / "results.json"
    results = json.loads(path.read_text())
    results["experiments"][0]["val_accuracy"] = 0.999
    path.write_text(json.dumps(results))
    result = runner.invoke(app, ["verify", str(root / "build"), "--only", "small"])
    assert result.exit_code == 1, result.output
    assert "results.json has val_accuracy = 0.999" in result.output


@pytest.mark.slow
def test_verify_away_from_the_project_asks_for_it_when_a_custom_builder_is_missing(runner, make_project,
                                                                                 tmp_path: Path) -> None:
    import shutil

    from reportgen.cli import app

    root = make_project({
        "experiments/1-nets.toml": 'number = "1"\ntitle = "t"\n[[runs]]\nname = "own"\nkind = "custom"\n'
                                   'builder = "nets:tiny"\nparams = { width = 8 }\n',
        "experiments/1-nets.md": "Text.\n",
        "experiments/nets.py": "import keras\n\n\ndef tiny(width):\n    return keras.Sequential(["
                               "keras.Input((28, 28)), keras.layers.Flatten(), "
                               "keras.layers.Dense(width, activation='relu'), "
                               "keras.layers.Dense(10, activation='softmax')])\n"})
    build_or_fail(root, LIMITS)
    away = tmp_path / "handed-in" / "build"
    shutil.copytree(root / "build", away)
    result = runner.invoke(app, ["verify", str(away)])
    assert result.exit_code == 2, result.output
    out = result.output.replace("\n", "")
    assert "experiment 'own' is built by nets:tiny" in out and "pass -C PROJECT" in out
    assert "nothing was run" in out and "do not reproduce" not in out
    result = runner.invoke(app, ["verify", str(away), "-C", str(root)])
    assert result.exit_code == 0, result.output
    assert "bit-identical weights" in result.output


@pytest.mark.slow
def test_verify_stops_before_running_on_other_data(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    path = root / "build" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["limits"]["train"] = 200  # this machine then loads other images than the build recorded
    path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(root / "build")])
    assert result.exit_code == 2, result.output
    assert "not the data the build used" in result.output and "nothing was run" in result.output


@pytest.mark.slow
def test_verify_under_jax_stops_before_running_on_an_xla_option_xla_lacks(builds: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    # Else every run would fail in turn and the build would read as "does not reproduce" (exit 1).
    import os
    import subprocess
    import sys

    root = copy_project(builds["a"], tmp_path)
    env = {**os.environ, "REPORTGEN_XLA_OPTIONS": '{"xla_gpu_enable_trition_gemm": false}'}
    done = subprocess.run([sys.executable, "-m", "reportgen", "verify", str(root / "build"), "--backend", "jax"],
                          capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "REPORTGEN_XLA_OPTIONS: XLA refused it" in output and "'xla_gpu_enable_trition_gemm'" in output
    assert "Verifying" not in output and "Traceback" not in output


# --- check -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_check_passes_a_clean_project(builds: dict[str, Path], runner) -> None:
    from reportgen.cli import app

    result = runner.invoke(app, ["check", "-C", str(builds["a"])])
    assert result.exit_code == 0, result.output
    assert "Ready to hand in: 1 section(s), 2 experiment(s)" in result.output


@pytest.mark.slow
def test_check_does_not_pass_a_quick_draft(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    build_or_fail(root, ["--quick", *LIMITS])
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 1, result.output
    out = result.output.replace("\n", "")
    assert "report.pdf: a draft, built with the quick profile" in out and "`reportgen build --full`" in out
    assert "1 problem(s)" in out
    section = root / "experiments" / "1-nets.toml"
    section.write_text(section.read_text().replace("hidden_layers = [32]", "hidden_layers = [24]"))
    out = runner.invoke(app, ["check", "-C", str(root)]).output.replace("\n", "")
    # the way to bring it up to date is the draft's own command, not a full build
    assert "experiment 'wide' is stale (" in out
    assert "run `reportgen build --quick --limit-train 300 --limit-val 100`" in out
    build_or_fail(root, LIMITS)  # the full profile's results are cached: nothing trains
    assert runner.invoke(app, ["check", "-C", str(root)]).exit_code == 0


@pytest.mark.slow
def test_check_finds_a_typed_number_that_matches_no_result(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    slot = root / "experiments" / "1-nets.md"
    facts = json.loads((root / "build" / "results.json").read_text())["experiments"]
    small = next(f for f in facts if f["name"] == "small")
    typed_right = f"{small['val_accuracy'] * 100:.1f}%"
    slot.write_text(slot.read_text() + f"\nThe small net scored {typed_right}, the wide one 99.9% with "
                    f"{small['params']:,} and 123,456 parameters. TODO: say why.\n")
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 1, result.output
    out = result.output.replace("\n", "")
    # The nearest of every quotable number (accuracies, a class's recall, ...), with how to quote it.
    assert "1-nets.md:3: 99.9% matches no result of section 1; the nearest result is runs." in out
    assert re.search(r"99\.9% matches no result of section 1; the nearest result is (\S+) = [0-9.]+, which "
                     r"\{\{ \1 \| pct\(1\) \}\} prints", out)
    assert "1-nets.md:3: 123,456 matches no result" in out and "| num }}" in out
    assert "1-nets.md:3: 'TODO' left in the text" in out
    assert typed_right + " matches" not in out and f"{small['params']:,} matches" not in out
    assert "report.pdf: older than the commentary of section(s) 1, edited since it was made: run `reportgen " \
        "render`" in out
    assert "4 problem(s)" in out


@pytest.mark.slow
def test_a_slot_written_for_earlier_results_is_marked_until_accepted(builds: dict[str, Path], runner,
                                                                    tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    lock = json.loads((root / "experiments" / "commentary.lock.json").read_text())
    [(key, slots)] = lock["slots"].items()
    assert key.startswith("full mnist-sample[300/100] ") and list(slots) == ["1 1-nets.md"]
    section = root / "experiments" / "1-nets.toml"
    section.write_text(section.read_text().replace("hidden_layers = [16]", "hidden_layers = [20]"))
    output = build_or_fail(root, LIMITS)  # retrains `small`; its commentary is unchanged
    assert "1-nets.md: written for earlier results (" in output.replace("\n", "")
    html = (root / "build" / "report.html").read_text()
    assert "This commentary was written for earlier results" in html
    assert "12,730 -&gt; 15,910" in html  # the parameter count it quotes, then and now
    assert "experiments/1-nets.md: written for earlier results (" in html
    assert str(root) not in html  # the author's folders stay out of the report handed in

    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 1, result.output
    assert "stale slot" in result.output and "--accept 1" in result.output

    accepted = runner.invoke(app, ["check", "-C", str(root), "--accept", "1"])
    assert accepted.exit_code == 1, accepted.output  # the report on disk still shows the warning
    assert "Recorded section 1 (1-nets.md) as written for the current results" in accepted.output
    out = accepted.output.replace("\n", "")
    assert "report.pdf: shows 1 warning(s) that no longer hold (" in out and "run `reportgen render`" in out
    assert "1 problem(s)" in out
    rendered = runner.invoke(app, ["render", "-C", str(root)])
    assert rendered.exit_code == 0, rendered.output
    assert "written for earlier results" not in (root / "build" / "report.html").read_text()
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_check_fails_on_page_limit_and_fonts_not_embedded(builds: dict[str, Path], runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(builds["a"], tmp_path)
    project = root / "experiments" / "project.toml"
    project.write_text(project.read_text().replace('data = "mnist-sample"', 'data = "mnist-sample"\npage_limit = 2'))
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 1, result.output
    # The limit counts the main body (title page to the last section), not the appendix after it.
    assert "the main body (title page to the last section, before the appendix) has 3 pages, over the page_limit of 2" \
        in " ".join(result.output.split())
    assert "6 page(s) (3 in the main body)" in result.output
    project.write_text(project.read_text().replace("page_limit = 2", "page_limit = 3"))
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert "page_limit" not in result.output, result.output

    (root / "build" / "report.pdf").write_bytes(pdf_with_unembedded_font())
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert "fonts not embedded: Helvetica" in result.output


def pdf_with_unembedded_font() -> bytes:
    """One page of text in Helvetica, referenced by name only (not embedded), as old tools write it."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length 36 >>\nstream\nBT /F1 12 Tf 20 100 Td (Hello) Tj ET\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.mark.slow
def test_an_experiment_without_a_result_in_either_build_is_no_difference(builds: dict[str, Path], runner,
                                                                        tmp_path: Path) -> None:
    from reportgen.cli import app

    manifest = json.loads((builds["a"] / "build" / "manifest.json").read_text())
    entry = next(e for e in manifest["experiments"] if e["name"] == "wide")
    entry["metrics"] = dict.fromkeys(entry["metrics"])
    entry["state"], entry["error"] = "failed", "RuntimeError: out of memory"
    path = tmp_path / "failed.json"
    path.write_text(json.dumps(manifest))
    both = runner.invoke(app, ["compare", str(path), str(path)])
    assert both.exit_code == 0, both.output
    assert "no result in either build" in both.output
    one = runner.invoke(app, ["compare", str(builds["a"] / "build"), str(path)])
    assert one.exit_code == 1 and "no result in B" in one.output
