"""`repeats`: where it may be written, what each repeat is called and seeded with, and its errors."""

from __future__ import annotations

import pytest

from reportgen.errors import ReportgenError, SpecError
from reportgen.project.spec import load_project, repeat_seed, with_repeats
from tests.project.test_spec import problems_of

SECTION = """
number = "1"
title = "Repeated"
[defaults]
kind = "mlp"
repeats = 3
[[runs]]
name = "net-{hidden_layers}"
[runs.grid]
hidden_layers = [[8], [16]]
[[runs]]
name = "once"
hidden_layers = [4]
repeats = 1
"""


def test_each_repeat_is_an_experiment_of_its_own_with_a_seed_derived_from_the_runs(make_project):
    project = load_project(make_project({"experiments/1.toml": SECTION}))
    assert [e.name for e in project.experiments] == ["net-8", "net-16", "once"]
    assert [e.name for e in project.trained] == ["net-8", "net-8#2", "net-8#3", "net-16", "net-16#2", "net-16#3",
                                                 "once"]
    first, second, third = project.experiments[0].with_repeats()
    assert first is project.experiments[0] and first.model.seed == 3  # the run itself, seed and key unchanged
    assert second.model.seed == repeat_seed(3, 2) != 3 and third.model.seed == repeat_seed(3, 3)
    assert len({e.model.seed for e in project.trained if e.run == "net-8"}) == 3
    assert second.run == "net-8" and second.repeat == 2 and second.config()["name"] == "net-8#2"
    assert "repeats" not in second.config()  # raising repeats leaves each repeat's key as it was
    assert project.experiments[0].code_cell().startswith("repeats = 3\n")
    assert "repeats" not in project.experiments[2].code_cell()


def test_repeats_from_the_project_and_the_command_line(make_project):
    root = make_project({"experiments/project.toml": 'title = "T"\ndata = "mnist-sample"\n[defaults]\nrepeats = 2\n',
                         "experiments/1.toml": 'number = "1"\ntitle = "A"\n[[runs]]\nname = "a"\nkind = "mlp"\n'
                                               'hidden_layers = [4]\n'})
    project = load_project(root)
    assert [e.name for e in project.trained] == ["a", "a#2"]
    assert [e.name for e in with_repeats(project, 4).trained] == ["a", "a#2", "a#3", "a#4"]
    with pytest.raises(ReportgenError, match="--repeats 0"):
        with_repeats(project, 0)


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('repeats = 0', "runs[0].repeats", "from 1 to 100, got 0"),
    ('repeats = 2.5', "runs[0].repeats", "got 2.5"),
    ('repeats = true', "runs[0].repeats", "got True"),
    ('[runs.grid]\nrepeats = [1, 2]', "runs[0].grid.repeats", "not a grid axis"),
])
def test_a_bad_repeats_names_the_file_and_key_before_anything_trains(make_project, text, key, expected):
    root = make_project({"experiments/1.toml": f'number = "1"\ntitle = "A"\n[[runs]]\nname = "a"\nkind = "mlp"\n'
                                               f'hidden_layers = [4]\n{text}\n'})
    assert any(f"1.toml [{key}]:" in p and expected in p for p in problems_of(root)), problems_of(root)


def test_a_misspelt_repeats_in_defaults_is_caught(make_project):
    root = make_project({"experiments/1.toml": SECTION.replace("repeats = 3", "repeat = 3")})
    with pytest.raises(SpecError, match="did you mean 'repeats'"):
        load_project(root)
