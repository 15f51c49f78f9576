"""Figures, checked by what they show."""

from __future__ import annotations

import numpy as np

from reportgen.views import figures

HISTORY = {"loss": [1.0, 0.5, 0.3], "accuracy": [0.7, 0.85, 0.9], "val_loss": [0.8, 0.6, 0.55],
           "val_accuracy": [0.75, 0.8, 0.82], "epoch": [1, 2, 3]}


def test_learning_curves_show_training_and_validation_of_accuracy_and_loss():
    fig = figures.learning_curves("net", HISTORY)
    acc, loss = fig.axes
    assert acc.get_ylabel() == "Accuracy" and loss.get_ylabel() == "Loss"
    assert [line.get_label() for line in acc.get_lines()] == ["training", "validation"]
    assert list(acc.get_lines()[1].get_ydata()) == HISTORY["val_accuracy"]
    assert acc.get_xlabel() == "Epoch"


def test_params_figure_has_threshold_line_and_marks_the_smallest():
    points = [{"label": "a", "params": 100, "val_accuracy": 0.98}, {"label": "b", "params": 10, "val_accuracy": 0.9},
              {"label": "c", "params": 50, "val_accuracy": 0.975}]
    fig = figures.params_vs_accuracy(points, 0.97)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "97% line" in labels and "smallest above: c" in labels
    line = [ln for ln in ax.get_lines() if ln.get_label() == "97% line"][0]
    assert list(line.get_ydata()) == [0.97, 0.97]
    assert ax.get_xscale() == "log"


def test_run_names_on_the_scatter_do_not_cover_each_other_or_leave_the_figure():
    # Ten runs as the full assignment gives them: several of similar size and accuracy.
    sizes = {"200x100": 178110, "100x100": 89610, "10x100": 9960, "200x200": 199210, "100x200": 99710,
             "10x200": 12060, "200x10": 159010, "100x10": 79620, "10x10": 8070, "30x100": 27660}
    accuracy = [0.980, 0.978, 0.941, 0.981, 0.979, 0.942, 0.975, 0.972, 0.931, 0.966]
    points = [{"label": f"relu-{name}", "params": n, "val_accuracy": a}
              for (name, n), a in zip(sizes.items(), accuracy, strict=True)]
    fig = figures.params_vs_accuracy(points, 0.97)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert sorted(boxes) == sorted(p["label"] for p in points)
    names = sorted(boxes)
    overlapping = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if boxes[a].overlaps(boxes[b])]
    assert overlapping == []
    whole = fig.bbox
    assert all(whole.x0 <= b.x0 and b.x1 <= whole.x1 and whole.y0 <= b.y0 and b.y1 <= whole.y1
               for b in boxes.values())
    legend = ax.get_legend().get_window_extent(renderer)
    assert [name for name, box in boxes.items() if box.overlaps(legend)] == []
    assert figures.svg_text(figures.params_vs_accuracy(points, 0.97)) == figures.svg_text(fig)  # same bytes


def _beaten(p: dict, points: list[dict]) -> bool:
    return any(q["params"] < p["params"] and q["val_accuracy"] >= p["val_accuracy"] for q in points)


def test_a_crowded_scatter_names_the_runs_no_smaller_run_beats():
    # Beyond 30 runs, naming every point would take minutes and cover the plot.
    points = [{"label": f"run-{i}", "params": 1000 + 37 * i, "val_accuracy": 0.5 + 0.4 * ((i * 7919) % 101) / 101}
              for i in range(120)]
    fig = figures.params_vs_accuracy(points, 0.97)
    named = {t.get_text() for t in fig.axes[0].texts}
    unbeaten = {p["label"] for p in points if not _beaten(p, points)}
    assert named == unbeaten and 1 < len(named) < 30


def test_a_long_frontier_names_the_smallest_the_best_and_the_marked_run_among_thirty():
    # 40 runs, each larger one better: every run is on the frontier.
    points = [{"label": f"r{i}", "params": 1000 * (i + 1), "val_accuracy": 0.60 + 0.01 * i} for i in range(40)]
    fig = figures.params_vs_accuracy(points, 0.975)
    named = [t.get_text() for t in fig.axes[0].texts]
    assert len(named) == len(set(named)) <= 30
    assert {"r0", "r39", "r38"} <= set(named)  # the smallest, the best, the smallest at or above 97.5%
    gaps = np.diff(sorted(int(n[1:]) for n in named))
    assert gaps.max() <= 2  # spread along the frontier, not its first thirty


def test_mode_collapse_legends_sit_clear_of_the_axis_labels():
    rows = [{"epoch": e, "shares": [0.91 if d == 3 else 0.01 for d in range(10)], "entropy": 0.7,
             "max_entropy": 3.32} for e in (1, 2, 3)]
    fig = figures.mode_collapse(rows, "cnn")
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.xaxis.label.get_window_extent(renderer))
        assert not legend.overlaps(ax.get_window_extent(renderer))  # nor the line or bars it names
        assert legend.y0 >= fig.bbox.y0


def test_overlay_has_one_series_per_run():
    fig = figures.overlay({"a": HISTORY, "b": HISTORY, "c": HISTORY}, "val_accuracy")
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["a", "b", "c"]


def test_misclassified_grid_titles_true_and_predicted():
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    fig = figures.misclassified_grid(images, [1, 2, 3, 4], [7, 5, 8, 9], [0.9, 0.8, 0.7, 0.6], 3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["1→7\n90%", "2→5\n80%", "3→8\n70%"]


def test_svg_output_is_byte_stable(tmp_path):
    figures.save_svg(figures.learning_curves("net", HISTORY), tmp_path / "a.svg")
    figures.save_svg(figures.learning_curves("net", HISTORY), tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert b"<dc:date>" not in (tmp_path / "a.svg").read_bytes()


def test_a_threshold_reads_as_written_and_an_empty_group_has_no_legend_entry():
    points = [{"label": "a", "params": 100, "val_accuracy": 0.9}, {"label": "b", "params": 10, "val_accuracy": 0.8}]
    labels = figures.params_vs_accuracy(points, 0.975).axes[0].get_legend_handles_labels()[1]
    assert "97.5% line" in labels and "below 97.5%" in labels
    assert not any(label.startswith("at or above") for label in labels)  # no run is


def test_a_loss_that_spans_decades_is_drawn_on_a_log_scale():
    wild = {**HISTORY, "loss": [280.0, 140.0, 60.0]}
    calm = {**HISTORY, "loss": [0.9, 0.5, 0.4]}
    spread = figures.overlay({"l2-1": wild, "l2-0": calm}, "loss").axes[0]
    assert spread.get_yscale() == "log" and spread.get_ylabel() == "Loss (log scale)"
    assert figures.overlay({"l2-0": calm}, "loss").axes[0].get_yscale() == "linear"


# The width figures are printed at: A4 (595.3 pt) less the page margins (2 x 18 mm) and the body's
# padding (2 x 1em at 10.5 pt), from templates/style.css. A wider figure is scaled down to it.
PRINTED_WIDTH_PT = 595.3 - 2 * 18 / 25.4 * 72 - 2 * 10.5
MIN_PRINTED_PT = 7.0


def printed_text_sizes(fig) -> tuple[float, list[float]]:
    """The figure's printed scale and the size of every piece of text in it, in printed points."""
    import re

    svg = figures.svg_text(fig)
    width = float(re.search(r'<svg[^>]* width="([\d.]+)pt"', svg).group(1))
    scale = min(1.0, PRINTED_WIDTH_PT / width)
    sizes = [float(s) * scale for s in re.findall(r"font-size:\s*([\d.]+)px", svg)]
    return scale, sizes


def every_figure():
    rng = np.random.default_rng(0)
    histories = {f"tanh-200x100-l2-{i}": HISTORY for i in range(10)}
    points = [{"label": f"relu-{i}x100", "params": 1000 * (i + 1), "val_accuracy": 0.9 + i / 200} for i in range(10)]
    rows = [{"epoch": e, "shares": list(np.full(10, 0.1)), "entropy": 3.3, "max_entropy": 3.32} for e in (1, 2, 3)]
    gan = {"epoch": [1, 2], "d_loss": [0.6, 0.5], "g_loss": [0.9, 1.1], "d_acc_real": [0.8, 0.7],
           "d_acc_fake": [0.3, 0.5]}
    yield "learning curves", figures.learning_curves("relu-200x100", HISTORY)
    yield "small multiples", figures.curves_grid(histories)
    yield "overlay", figures.overlay(histories, "val_accuracy")
    yield "overlay on a log scale", figures.overlay({"a": {"loss": [280.0, 100.0]}, "b": {"loss": [0.5, 0.1]}}, "loss")
    yield "parameters", figures.params_vs_accuracy(points, 0.97)
    yield "misclassified", figures.misclassified_grid(rng.integers(0, 255, (36, 28, 28), dtype=np.uint8),
                                                      [3] * 36, [5] * 36, [0.94] * 36, 36)
    yield "gan losses", figures.gan_losses("gan", gan)
    yield "sample progress", figures.sample_progress(rng.random((5, 12, 28, 28)), [1, 5, 10, 15, 20])
    yield "mode collapse", figures.mode_collapse(rows, "cnn")
    yield "confusion", figures.confusion(np.eye(10, dtype=int).tolist(), figures.DIGITS, "cnn")
    yield "metric against setting", figures.metric_vs_setting(
        [{"x": 10.0 ** -i, "y": 0.9, "group": None} for i in range(5)], "strength", "val_accuracy", "log")


def test_no_text_in_any_figure_is_under_7_pt_as_printed():
    for name, fig in every_figure():
        scale, sizes = printed_text_sizes(fig)
        assert sizes, name  # the figure has text, and it is real text
        assert min(sizes) >= MIN_PRINTED_PT, f"{name}: {min(sizes):.2f} pt at a print scale of {scale:.2f}"


def test_small_multiples_give_each_run_a_panel_on_one_scale_with_accuracy_as_percentages():
    histories = {"a": HISTORY, "b": {**HISTORY, "val_accuracy": [0.5, 0.6, 0.65]}, "c": HISTORY, "d": HISTORY,
                 "e": HISTORY}
    fig = figures.curves_grid(histories)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["a", "b", "c", "d", "e"]
    assert len({ax.get_ylim() for ax in panels}) == 1  # one shared scale: runs compare at a glance
    assert list(panels[1].get_lines()[1].get_ydata()) == [0.5, 0.6, 0.65]
    fig.canvas.draw()
    assert panels[0].get_yticklabels()[-1].get_text().endswith("%")


def test_a_figure_drawn_from_the_same_arguments_is_copied_not_redrawn(tmp_path):
    history = {"accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7], "loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
    with figures.cached(tmp_path / "cache") as cache:
        figures.save(tmp_path / "a.svg", figures.learning_curves, "run", history)
        figures.save(tmp_path / "b.svg", figures.learning_curves, "run", dict(history))
        assert cache.drawn == 1 and (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
        figures.save(tmp_path / "c.svg", figures.learning_curves, "run", {**history, "val_accuracy": [0.4, 0.71]})
        assert cache.drawn == 2  # one value changed: drawn again
    with figures.cached(tmp_path / "cache") as cache:
        labels = ([1, 2], [3, 4], [0.9, 0.8], 2)
        figures.save(tmp_path / "d.svg", figures.misclassified_grid, np.zeros((2, 28, 28)), *labels)
        figures.save(tmp_path / "e.svg", figures.misclassified_grid, np.ones((2, 28, 28)), *labels)
        assert cache.drawn == 2  # arrays count by their content
    assert len(list((tmp_path / "cache").glob("*.svg"))) == 2  # what the last render did not use is gone
