"""A built report with a classifier, a GAN judged by it, math, an attached PDF and a prose-only
section: what the PDF and HTML show, what a change retrains, and how a bad attachment fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from reportgen.cli import app
from reportgen.report import render
from tests.conftest import build_or_fail, copy_project, read_manifest, run_command, wait_for_checkpoint, write_project
from tests.report.test_pdf import drawn_from_forms, same_pages

pytestmark = pytest.mark.slow
LIMITS = ["--limit-train", "1000", "--limit-val", "200"]

FILES = {
    "experiments/1-classifier.toml": """
        number = "1"
        title = "Classifier"
        [[runs]]
        name = "clf"
        kind = "mlp"
        hidden_layers = [32]
        epochs = 3
        batch_size = 32
    """,
    "experiments/1-classifier.md": "The judge reaches {{ runs['clf'].val_accuracy | pct }}.\n",
    "experiments/2-theory.toml": """
        number = "2"
        title = "Theory"
        attach = "derivation.pdf"
    """,
    "experiments/2-theory.md": """
        The optimal discriminator is $D^*(x) = p_{data}(x) / (p_{data}(x) + p_g(x))$, and the game is

        $$
        \\min_G \\max_D V(D, G)
        $$
    """,
    "experiments/3-gan.toml": """
        number = "3"
        title = "Adversarial"
        [defaults]
        kind = "gan"
        generator = [32]
        discriminator = [32]
        noise_dim = 16
        samples = 100
        epochs = 3
        [[runs]]
        name = "gan"
        [[runs]]
        name = "gan-nan"
        optimizer = "sgd"
        learning_rate = 1e30
        [[views]]
        kind = "mode_collapse"
        run = "gan"
        classifier = "clf"
        [[views]]
        kind = "mode_collapse"
        run = "gan-nan"
        classifier = "clf"
        [[views]]
        kind = "convergence"
        compare = ["clf"]
    """,
    "experiments/3-gan.md": """
        {% set mc = section.views.mode_collapse["gan"] %}
        Final losses: D {{ runs["gan"].d_loss | fixed(3) }}, G {{ runs["gan"].g_loss | fixed(3) }}.
        Digits present at the end: {{ mc.final.digits_present }} of 10, entropy {{ mc.final.entropy | fixed(2) }} bits.
    """,
    "experiments/4-feedback.toml": """
        number = "4"
        title = "Feedback"
    """,
    "experiments/4-feedback.md": "Only prose here: no experiment belongs to this section.\n",
}


def derivation_pdf(path: Path, pages: int = 2) -> None:
    """A small attachment of known text, one line per page."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path, metadata={"CreationDate": None}) as pdf:
        for i in range(pages):
            fig = Figure(figsize=(8.5, 11))  # US Letter: scaled onto the report's A4 page
            fig.text(0.1, 0.9, f"Derivation page {i + 1}", fontsize=20)
            pdf.savefig(fig)


def build(runner, root: Path, *args: str):
    return runner.invoke(app, ["build", "-C", str(root), *LIMITS, *args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_project(tmp_path_factory.mktemp("gan") / "project", dict(FILES))
    derivation_pdf(root / "experiments" / "derivation.pdf")
    return root, build_or_fail(root, LIMITS)


@pytest.fixture
def copy(built, tmp_path):
    return copy_project(built[0], tmp_path)


manifest = read_manifest


def outline(reader: PdfReader) -> list[tuple[int, str, int]]:
    """(depth, title, page index) of every bookmark."""
    rows: list[tuple[int, str, int]] = []

    def walk(items, depth):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                rows.append((depth, item.title, reader.get_destination_page_number(item)))

    walk(reader.outline, 0)
    return rows


def test_attached_pdf_is_merged_at_its_section_with_bookmark_contents_entry_and_page_numbers(built):
    root, output = built
    reader = PdfReader(root / "build" / "report.pdf")
    texts = [page.extract_text() for page in reader.pages]
    marks = outline(reader)
    attached = [m for m in marks if m[1] == "Attached: derivation.pdf"]
    assert len(attached) == 1
    depth, _, page = attached[0]
    section = next(m for m in marks if m[1] == "2 Theory")
    assert depth == section[0] + 1 and marks.index(section) < marks.index(attached[0])  # nested under 2
    assert "Derivation page 1" in texts[page] and "Derivation page 2" in texts[page + 1]
    # The attached pages keep the running header and their page numbers.
    total = len(reader.pages)
    assert f"{page + 1} / {total}" in texts[page] and f"{page + 2} / {total}" in texts[page + 1]
    assert sum("Derivation page" in t for t in texts) == 2
    # The contents lists the attachment with the page it really starts on, and the page count in
    # every footer includes the attached pages.
    listed = re.search(r"Attached: derivation\.pdf[ .\u2024]*(\d+)", texts[1])
    assert listed is not None and int(listed[1]) == page + 1
    assert f"{len(reader.pages)} / {len(reader.pages)}" in texts[-1]
    html = (root / "build" / "report.html").read_text()
    assert 'href="assets/attachments/2-theory-derivation.pdf"' in html
    assert (root / "build" / "assets" / "attachments" / "2-theory-derivation.pdf").read_bytes() == \
        (root / "experiments" / "derivation.pdf").read_bytes()


def test_the_figures_drawn_once_give_the_pages_weasyprint_draws_in_place(built, tmp_path):
    """report.pdf places each figure from build/.figures/forms; a render that draws every SVG in
    place gives the same pages: count, text, contents, bookmarks, alt text and pixels."""
    root, _ = built
    direct = tmp_path / "direct.pdf"
    render.pdf(root / "build" / "report.html", direct, manifest(root)["attachments"], reuse_figures=False)
    kept = list((root / "build" / render.FIGURE_FORMS).glob("*.pdf"))
    assert drawn_from_forms(root / "build" / "report.pdf") == len(kept) >= 5  # curves, samples, formulas
    same_pages(root / "build" / "report.pdf", direct)


def test_math_commentary_and_a_prose_only_section_are_in_the_report(built):
    root, _ = built
    html = (root / "build" / "report.html").read_text()
    assert html.count('<img class="math" src="data:image/svg+xml;base64,') == 2
    assert "$D^*" not in html  # no raw TeX left in the text
    reader = PdfReader(root / "build" / "report.pdf")
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert "4 Feedback Only prose here: no experiment belongs to this section." in text
    top = [m[1] for m in outline(reader) if m[0] == 1]
    assert top[top.index("4 Feedback") - 1] == "3 Adversarial" and top[-1] == "B Provenance"  # the appendix follows


def test_gan_run_shows_losses_sample_grids_log_and_measured_mode_collapse(built):
    root, output = built
    assert "Measuring mode collapse: 3 epoch(s) of 100 images generated by gan, classified by clf" in output
    html = (root / "build" / "report.html").read_text()
    for figure in ("gan-losses-gan.svg", "gan-progress-gan.svg", "gan-samples-gan.svg", "3-gan-mode_collapse-0.svg"):
        assert f'src="assets/{figure}"' in html and (root / "build" / "assets" / figure).is_file()
    log = (root / "build" / "assets" / "gan-output.txt").read_text().splitlines()
    assert log[:1] == ["Epoch 1"] and len(log) == 9 and log[1].startswith("Discriminator loss: ")
    key = next(e["key"] for e in manifest(root)["experiments"] if e["name"] == "gan")
    result = json.loads((root / ".reportgen-cache" / "results" / key / "result.json").read_text())
    d_loss = result["history"]["d_loss"][-1]
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(root / "build" / "report.pdf").pages).split())
    assert f"Final losses: D {d_loss:.3f}" in text
    assert "Digits present at the end: " in text and " of 10, entropy " in text
    assert "Mode collapse of gan, measured" in text and "Digits present" in text
    # The run that blew up is marked, and the report still built (exit 0: divergence is a result).
    assert "gan-nan: diverged at epoch 1" in output
    assert "Training diverged at epoch 1" in html
    assert re.search(r'Mode collapse of <a class="run" href="#run-gan-nan"[^>]*><code>gan-nan</code></a> cannot be '
                     r"measured: the run finished no epoch", html)
    entries = {e["name"]: e for e in manifest(root)["experiments"]}
    assert entries["gan-nan"]["status"] == "diverged" and entries["gan"]["resumed"] == []
    # Each figure's alt text says what the data shows: a screen reader hears the losses' path.
    assert re.search(rf"alt=\"Two line charts of gan over 3 epochs\. Left, cross-entropy: the discriminator's "
                     rf"from [0-9.]+ to {d_loss:.4f}", html)
    assert re.search(r'alt="Left, stacked bars of the share of each of 10 classes among the images gan generated at '
                     r'each of 3 epochs, as clf classifies them', html)


def test_a_one_digit_generator_scores_one_class_with_the_trained_classifier(built):
    """Feed the measurement images of known composition: real validation 1s stand in for a
    generator that draws nothing else."""
    from reportgen.project.data import load
    from reportgen.project.dataset import subset
    from reportgen.project.spec import load_project
    from reportgen.train.run import classify
    from reportgen.train.store import WEIGHTS_FILE
    from reportgen.views.analysis import class_distribution

    root, _ = built
    project = load_project(root)
    clf = next(e for e in project.experiments if e.name == "clf")
    key = next(e["key"] for e in manifest(root)["experiments"] if e["name"] == "clf")
    weights = root / ".reportgen-cache" / "results" / key / WEIGHTS_FILE
    data = subset(load("mnist-sample", None), 1000, 1000)
    ones = data.x_val[data.y_val == 1]
    probs = classify(clf, weights, ones, project.experiments_dir, 10)
    measured = class_distribution(probs.argmax(axis=1), probs.max(axis=1), present_share=0.1)
    assert measured["top_digit"] == 1 and measured["top_share"] > 0.8
    assert measured["digits_present"] == 1 and measured["entropy"] < 1.0
    mixed = np.concatenate([ones, data.x_val[data.y_val == 0]])
    probs = classify(clf, weights, mixed, project.experiments_dir, 10)
    assert class_distribution(probs.argmax(axis=1), probs.max(axis=1), 0.1)["digits_present"] == 2


@pytest.mark.slow
def test_render_and_check_of_a_measured_gan_load_no_backend(copy):
    """The mode-collapse measurement needs the classifier (so Keras): the build stores it right after
    training, and rendering or checking the report only reads it. Without it, the report says to build."""
    measured = [e for e in (copy / ".reportgen-cache" / "results").iterdir()
                if json.loads((e / "result.json").read_text())["name"].startswith("mode-collapse.gan.")]
    assert len(measured) == 1
    shutil.rmtree(measured[0])
    probe = ("import sys\n"
             "from typer.testing import CliRunner\n"
             "from reportgen.cli import app\n"
             "for command in ('render', 'check'):\n"
             "    result = CliRunner().invoke(app, [command, '-C', sys.argv[1]])\n"
             "    print(command, result.exit_code)\n"
             "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(copy)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "render 0" and lines[-1] == "[]", done.stdout
    html = (copy / "build" / "report.html").read_text()
    measured_heading = r'Mode collapse of <a class="run" href="#run-gan"[^>]*><code>gan</code></a>, measured'
    assert not re.search(measured_heading, html)
    assert re.search(r'Mode collapse of <a class="run" href="#run-gan"[^>]*><code>gan</code></a> is not measured yet: '
                     r"run <code>reportgen build --limit-train 1000 --limit-val 200</code>", html)
    again = subprocess.run([sys.executable, "-m", "reportgen", "build", "-C", str(copy), *LIMITS],
                           capture_output=True, text=True, timeout=300)
    assert "; 0 to train." in again.stdout, again.stdout + again.stderr
    assert "images generated by gan, classified by clf" in again.stdout, again.stdout
    assert re.search(measured_heading, (copy / "build" / "report.html").read_text())


def test_changing_the_classifier_remeasures_without_retraining_the_gan(runner, copy):
    again = build(runner, copy)
    assert "; 0 to train." in again.output and "Measuring mode collapse" not in again.output  # cached
    toml = copy / "experiments/1-classifier.toml"
    toml.write_text(toml.read_text().replace("hidden_layers = [32]", "hidden_layers = [24]"))
    result = build(runner, copy)
    assert result.exit_code == 0, result.output
    assert "; 1 to train." in result.output and "Measuring mode collapse" in result.output
    hits = {e["name"]: e["cache_hit"] for e in manifest(copy)["experiments"]}
    assert hits == {"clf": False, "gan": True, "gan-nan": True}


def test_only_the_gan_section_trains_its_classifier_first(runner, copy):
    shutil.rmtree(copy / ".reportgen-cache")
    result = runner.invoke(app, ["run", "-C", str(copy), *LIMITS, "--only", "3"])
    assert result.exit_code == 0, result.output
    assert "; 3 to train." in result.output
    assert result.output.index("[1/3] clf") < result.output.index("[2/3] gan")


def test_unreadable_or_missing_attachment_is_a_clear_error(runner, copy):
    (copy / "experiments/derivation.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    result = runner.invoke(app, ["render", "-C", str(copy)])
    assert result.exit_code == 1
    assert f"Error: {copy / 'experiments/derivation.pdf'}: attached file is not a readable PDF" in result.output
    (copy / "experiments/derivation.pdf").unlink()
    result = runner.invoke(app, ["render", "-C", str(copy)])
    assert result.exit_code == 1
    assert "2-theory.toml [attach]: file not found" in result.output


def test_a_build_killed_mid_gan_resumes_from_the_last_finished_epoch(make_project):
    """kill -9 while the GAN trains: the next build continues from its checkpoint and says so."""
    root = make_project({
        "experiments/g.toml": """
            number = "1"
            title = "Long GAN"
            [[runs]]
            name = "long"
            kind = "gan"
            generator = [16]
            discriminator = [16]
            noise_dim = 8
            samples = 16
            epochs = 150
        """,
        "experiments/g.md": "A long run.\n",
    })
    command = run_command(root)
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    checkpoint = wait_for_checkpoint(root, process)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert list((root / ".reportgen-cache" / "results").iterdir()) == []  # nothing half-stored
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "long: resuming after epoch " in finished.stdout
    assert "(resumed after epoch " in finished.stdout
    assert not checkpoint.parent.exists()  # the stored result replaces the checkpoint
    [entry] = list((root / ".reportgen-cache" / "results").iterdir())
    result = json.loads((entry / "result.json").read_text())
    assert result["history"]["epoch"] == list(range(1, 151)) and result["resumed"][0]["from_epoch"] >= 1
