"""`reportgen init`: a new project that loads (and, slow tier, builds) as it is; never over an old one."""

from __future__ import annotations

import pytest

from reportgen.cli import app
from reportgen.project.spec import load_project


def test_init_writes_a_project_that_loads_and_refuses_to_write_over_it(runner, tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert "Wrote 4 file(s)" in result.output and "reportgen build --quick -C" in result.output
    project = load_project(tmp_path / "mine")
    assert [e.name for e in project.experiments] == ["dense-16", "dense-64", "dense-256", "mine"]
    assert project.data == "mnist-sample" and project.title == "My report"
    again = runner.invoke(app, ["init", str(tmp_path / "mine")])
    assert again.exit_code == 1 and "already exists; reportgen init writes a new project only" in again.output


def test_init_example_copies_the_coursework(runner, tmp_path):
    result = runner.invoke(app, ["init", "--example", str(tmp_path / "course")])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path / "course")
    assert len(project.experiments) == 24 and (tmp_path / "course" / "experiments" / "attachments").is_dir()


@pytest.mark.slow
def test_a_new_project_builds_as_it_is(runner, tmp_path):
    from pypdf import PdfReader

    assert runner.invoke(app, ["init", str(tmp_path / "mine")]).exit_code == 0
    result = runner.invoke(app, ["build", "--quick", "-C", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(tmp_path / "mine" / "build" / "report.pdf").pages)
                    .split())
    assert "My report" in text and "The model from models.py reaches " in text
