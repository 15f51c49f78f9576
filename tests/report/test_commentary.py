"""Placeholders in commentary: filled from results, strict about typos, sandboxed."""

from __future__ import annotations

import pytest

from reportgen.errors import RenderError
from reportgen.project.formats import pct
from reportgen.report.commentary import (
    UnknownPlaceholder,
    environment,
    markdown_to_html,
    render_bounded,
    render_commentary,
    share,
)

CONTEXT = {"runs": {"relu-30x100": {"val_accuracy": 0.97012, "params": 27660}}}
NAMES = ["relu-30x100", "val_accuracy", "params"]


def fill(source: str) -> str:
    return render_bounded(environment(), source, "c.md", CONTEXT, NAMES)


def test_placeholders_are_filled_and_formatted():
    text = fill('{{ runs["relu-30x100"].val_accuracy | pct }} with {{ runs["relu-30x100"].params | num }}')
    assert text == "97.01% with 27,660"
    assert pct(0.5, 0) == "50%"


def test_pct_prints_the_projects_percent_digits_unless_a_placeholder_gives_its_own():
    one = {**CONTEXT, "percent_digits": 1}
    source = '{{ runs["relu-30x100"].val_accuracy | pct }} or {{ runs["relu-30x100"].val_accuracy | pct(3) }}'
    assert render_bounded(environment(), source, "c.md", one, NAMES) == "97.0% or 97.012%"


def test_typo_fails_naming_file_line_and_the_nearest_name():
    with pytest.raises(UnknownPlaceholder) as info:
        fill('line one\nline two {{ runs["relu-30x10"].val_accuracy }}\n')
    message = str(info.value)
    assert message.startswith("c.md:2: unknown placeholder 'relu-30x10'")
    assert "did you mean 'relu-30x100'?" in message


def test_unknown_attribute_fails_too():
    with pytest.raises(RenderError, match="c.md:1: unknown placeholder 'val_acuracy'"):
        fill('{{ runs["relu-30x100"].val_acuracy }}')


def test_syntax_error_names_the_line():
    with pytest.raises(RenderError, match=r"c.md:3: template syntax error"):
        fill("a\nb\n{{ runs[ }}\n")


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ runs|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_python_internals(payload):
    with pytest.raises(RenderError):
        fill(payload)


def test_runaway_output_is_stopped_with_a_clear_error():
    with pytest.raises(RenderError, match="may not build a value"):
        fill("{{ 'a' * 10**9 }}")


def test_raw_html_in_markdown_is_shown_as_text_not_run():
    html = markdown_to_html('<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">\n')
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_values_are_escaped_before_markdown():
    context = {"runs": {"x": {"note": "<b>bold</b>"}}}
    text = render_bounded(environment(), '{{ runs["x"].note }}', "c.md", context)
    assert text == "&lt;b&gt;bold&lt;/b&gt;"


def test_missing_and_empty_slots_are_warnings_not_blank(tmp_path):
    html, warning = render_commentary(tmp_path / "none.md", CONTEXT, NAMES)
    assert html is None and "commentary slot is missing" in warning
    (tmp_path / "empty.md").write_text("  \n")
    html, warning = render_commentary(tmp_path / "empty.md", CONTEXT, NAMES)
    assert html is None and "commentary slot is empty" in warning


def test_commentary_renders_to_the_expected_html(tmp_path, golden):
    (tmp_path / "c.md").write_text(
        "# Findings\n\nThe small net reaches **{{ runs['relu-30x100'].val_accuracy | pct }}** "
        "with {{ runs['relu-30x100'].params | num }} parameters.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    html, warning = render_commentary(tmp_path / "c.md", CONTEXT, NAMES)
    assert warning is None
    golden("commentary_heading_table_placeholders.html", str(html))


def test_math_becomes_vector_images_and_code_and_prices_stay_text():
    html = markdown_to_html("Loss $\\log D(x)$, code `$x$`, costs 5$ or 6$.\n\n$$\n\\min_G \\max_D V(D,G)\n$$\n")
    assert html.count('<img class="math" src="data:image/svg+xml;base64,') == 2
    assert 'alt="\\log D(x)"' in html and "<code>$x$</code>" in html and "costs 5$ or 6$." in html
    assert '<div class="math-display">' in html


def test_unsupported_math_fails_naming_file_and_line():
    with pytest.raises(RenderError) as info:
        markdown_to_html("fine\n\nstill fine\nbut $\\begin{align} x \\end{align}$ is not\n", "s.md")
    assert str(info.value).startswith("s.md:4: math that mathtext cannot draw: $\\begin{align} x \\end{align}$")
    with pytest.raises(RenderError, match="s.md:3: math that mathtext cannot draw"):
        markdown_to_html("a\n\n$$\n\\frac{1}{\n$$\n", "s.md")


@pytest.mark.parametrize("source", [
    '{% set ns = namespace(s="ab") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}',
    '{{ "x" | center(999999999) }}',
    '{{ "%0999999999d" % 1 }}',
    '{{ "{:>999999999}".format(1) }}',
    '{{ ("a" * 999999) | replace("", "bb") }}',
    '{{ "x\ny" | indent(999999999) }}',
    '{{ "%0999999999d" | format(1) }}',
])
def test_values_that_would_fill_memory_are_refused_before_they_are_built(source):
    with pytest.raises(RenderError, match=r"c\.md:\d+: refused by the template sandbox"):
        render_bounded(environment(), source, "c.md", CONTEXT, NAMES)


@pytest.mark.parametrize("source", ['{{ "{a}".format() }}', '{{ "%(a)s" % {} }}'])
def test_format_errors_name_file_and_line_instead_of_a_traceback(source):
    with pytest.raises(RenderError, match=r"c\.md:1: KeyError while filling placeholders"):
        render_bounded(environment(), source, "c.md", CONTEXT, NAMES)


def test_a_slots_recorded_quotes_leave_out_durations(tmp_path) -> None:
    # A retrain takes 3.5 s where the last took 3.6 s: not a reason to call the prose stale.
    slot = tmp_path / "s.md"
    slot.write_text("Reached {{ acc | pct }} in {{ t | seconds }} an epoch, {{ n | num }} parameters.\n")
    quotes: list[str] = []
    html, warning = render_commentary(slot, {"acc": 0.97, "t": 3.64, "n": 27660}, ["acc", "t", "n"], quotes)
    assert warning is None and "3.6 s" in str(html)
    assert quotes == ["97.00%", "27,660"]


def test_commentary_answers_questions_about_epochs():
    context = {"runs": {"tanh": {"history": {"val_accuracy": [0.90, 0.94, 0.955, 0.96], "val_loss": [0.4, 0.3]}}}}
    names = ["tanh", "history", "val_accuracy", "val_loss"]

    def fill_with(source: str) -> str:
        return render_bounded(environment(), source, "c.md", context, names)

    assert fill_with('{{ runs["tanh"] | epoch_reaching(0.95) }}') == "3"
    assert fill_with('{{ runs["tanh"].history.val_accuracy[1] | pct }}') == "94.00%"
    assert fill_with('{{ runs["tanh"] | epoch_reaching(0.35, "val_loss") }}') == "2"  # a loss falls to it
    assert fill_with('{{ runs["tanh"] | epoch_reaching(0.99) or "no epoch" }}') == "no epoch"
    with pytest.raises(RenderError, match=r"c.md:1: .*no per-epoch 'val_acc'; it has \['val_accuracy', 'val_loss'\]"):
        fill_with('{{ runs["tanh"] | epoch_reaching(0.9, "val_acc") }}')


def test_a_share_the_author_wrote_keeps_its_own_digits():
    assert (share(0.97), share(0.975), share(0.005), share(1e-4)) == ("97%", "97.5%", "0.5%", "0.01%")


def test_a_formula_drawn_once_is_read_back_from_the_figure_cache_without_drawing_it_again(tmp_path, monkeypatch):
    from reportgen.report import formulas
    from reportgen.views import figures

    with figures.cached(tmp_path / "figures") as cache:
        first = formulas.image("e^{i\\pi} + 1 = 0", False, "1.md", 1)
    assert len(list((tmp_path / "figures").glob("*.json"))) == 1 and "data:image/svg+xml" in first

    def never(*_args):
        raise AssertionError("drawn again")

    monkeypatch.setattr(formulas, "_svg", never)
    with figures.cached(tmp_path / "figures") as cache:
        assert formulas.image("e^{i\\pi} + 1 = 0", False, "1.md", 1) == first
    assert cache.used and len(list((tmp_path / "figures").glob("*.json"))) == 1
    with figures.cached(tmp_path / "figures"):  # a build without the formula drops it
        pass
    assert not list((tmp_path / "figures").glob("*.json"))
