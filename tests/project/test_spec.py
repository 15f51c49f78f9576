"""Experiment files: grid expansion and the messages bad input gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import ReportgenError, SpecError
from reportgen.project.spec import GANSpec, MLPSpec, load_project, select
from tests.conftest import REPO

SECTION = """
number = "2.1"
title = "A grid"

[defaults]
kind = "mlp"

[[runs]]
name = "net-{hidden_layers}-{strength}"
regularizer = "l2"
[runs.grid]
hidden_layers = [[8], [16, 4]]
strength = [0.0, 0.01, 1.0]
"""


def test_shipped_project_expands_to_every_run_of_the_assignment():
    project = load_project(REPO)
    counts = {s.number: len(s.experiments) for s in project.sections}
    assert counts == {"1.3": 10, "1.4": 5, "1.5": 4, "1.6": 2, "1.7": 1, "2.2": 0, "2.4": 2, "3": 0}
    names = [e.name for e in project.experiments]
    assert "relu-30x100" in names and "l2-1e-06" in names and "tanh-100x100-l2-1e-08" in names
    by_name = {e.name: e for e in project.experiments}
    assert isinstance(by_name["l2-0.01"].model, MLPSpec)
    assert by_name["l2-0.01"].model.hidden_layers == [200, 100]
    assert by_name["l2-0.01"].model.epochs == 10 and by_name["l2-0.01"].model.batch_size == 128
    assert "hidden_layers = [30, 100]" in by_name["relu-30x100"].code_cell()
    assert "learning_rate = 0.001  # Keras' default for adam\n" in by_name["relu-30x100"].code_cell()
    gan = by_name["gan"].model
    assert isinstance(gan, GANSpec) and gan.generator == [256, 512, 1024] and gan.regularizer == "none"
    assert by_name["gan-l2"].model.regularizer == "l2"  # type: ignore[union-attr]
    sections = {s.number: s for s in project.sections}
    assert sections["2.2"].attach is not None and sections["2.2"].attach.name == "gan-derivation.pdf"
    assert [s.number for s in project.sections][-1] == "3"  # prose only, placed last


def test_quick_profile_shortens_training_and_uses_the_sample():
    project = load_project(REPO, profile="quick")
    assert project.data == "mnist-sample"
    assert {e.model.epochs for e in project.experiments} == {2}


def test_grid_is_the_cartesian_product_with_names_from_the_template(make_project):
    root = make_project({"experiments/grid.toml": SECTION})
    names = [e.name for e in load_project(root).experiments]
    assert names == ["net-8-0", "net-8-0.01", "net-8-1", "net-16x4-0", "net-16x4-0.01", "net-16x4-1"]


def test_sections_are_ordered_by_number(make_project):
    later = SECTION.replace('"2.1"', '"10.2"').replace("net-", "b-")
    root = make_project({"experiments/a.toml": later, "experiments/b.toml": SECTION})
    assert [s.number for s in load_project(root).sections] == ["2.1", "10.2"]


def problems_of(root: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_project(root)
    return [str(p) for p in info.value.problems]


def test_every_problem_is_reported_at_once_with_file_key_and_expected_value(make_project):
    bad = """
    number = "1.1"
    title = "Broken"

    [[runs]]
    name = "a"
    kind = "mlp"
    hidden_layers = [10]
    optimizer = "adamm"
    epochs = "ten"
    dropuot = 0.5

    [[runs]]
    name = "b-{strength}"
    kind = "mlp"
    hidden_layers = [10]
    [runs.grid]
    strength = []
    """
    root = make_project({"experiments/bad.toml": bad})
    problems = problems_of(root)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert ("bad.toml [runs[0].optimizer]: Input should be 'adam', 'adamw', 'sgd', 'rmsprop' or 'nadam', "
            "got 'adamm'") in text
    assert "bad.toml [runs[0].epochs]: Input should be a valid integer" in text and "got 'ten'" in text
    assert "bad.toml [runs[0].dropuot]: unknown key" in text
    assert "bad.toml [runs[1].grid.strength]: grid expands to nothing" in text


def test_empty_grid_does_not_hide_other_problems_of_the_run(make_project):
    section = SECTION.replace("strength = [0.0, 0.01, 1.0]", "strength = []").replace(
        'regularizer = "l2"', 'regularizer = "l3"')
    text = "\n".join(problems_of(make_project({"experiments/g.toml": section})))
    assert "[runs[0].grid.strength]: grid expands to nothing" in text
    assert "[runs[0].regularizer]: Input should be 'none', 'l1' or 'l2', got 'l3'" in text


def test_toml_syntax_errors_and_duplicate_keys_name_the_line(make_project):
    root = make_project({
        "experiments/dup.toml": 'number = "1.1"\ntitle = "x"\ntitle = "y"\n',
        "experiments/syntax.toml": 'number = "1.2"\ntitle = "x\n',
    })
    text = "\n".join(problems_of(root))
    assert "dup.toml:3: invalid TOML" in text
    assert "syntax.toml:2: invalid TOML" in text


def test_duplicate_run_names_across_files_are_rejected(make_project):
    one = 'number = "1.1"\ntitle = "a"\n[[runs]]\nname = "same"\nkind = "mlp"\nhidden_layers = [4]\n'
    two = one.replace('"1.1"', '"1.2"')
    root = make_project({"experiments/one.toml": one, "experiments/two.toml": two})
    text = "\n".join(problems_of(root))
    assert "run name 'same' is used twice (also in one.toml)" in text


def test_defaults_error_points_at_the_defaults_table(make_project):
    section = SECTION.replace('kind = "mlp"', 'kind = "mlp"\nactivation = "swish"')
    text = "\n".join(problems_of(make_project({"experiments/g.toml": section})))
    assert "g.toml [defaults.activation]: Input should be" in text and "got 'swish'" in text


def test_unknown_kind_lists_the_kinds(make_project):
    section = SECTION.replace('kind = "mlp"', 'kind = "transformer"')
    text = "\n".join(problems_of(make_project({"experiments/g.toml": section})))
    assert "'mlp', 'cnn', 'custom'" in text and "transformer" in text


def test_misclassified_view_must_name_a_run_of_its_section(make_project):
    section = SECTION + '\n[[views]]\nkind = "misclassified"\nrun = "nope"\n'
    text = "\n".join(problems_of(make_project({"experiments/g.toml": section})))
    assert "g.toml [views[0].run]: expected one of this section's runs" in text and "'nope'" in text


def test_grid_needs_a_name_template(make_project):
    section = SECTION.replace('name = "net-{hidden_layers}-{strength}"', 'name = "net"')
    text = "\n".join(problems_of(make_project({"experiments/g.toml": section})))
    assert "a grid of 6 runs needs a name template naming its keys" in text


def test_missing_project_file_says_what_a_project_needs(tmp_path):
    (tmp_path / "experiments").mkdir()
    text = "\n".join(problems_of(tmp_path))
    assert "project.toml: not found" in text


def test_only_selects_sections_runs_and_globs(make_project):
    root = make_project({"experiments/grid.toml": SECTION})
    project = load_project(root)
    assert len(select(project, ["2.1"])) == 6
    assert [e.name for e in select(project, ["net-16x4-*"])] == ["net-16x4-0", "net-16x4-0.01", "net-16x4-1"]
    assert select(project, ["grid"]) == select(project, ["2.1"])  # the section's file stem
    with pytest.raises(ReportgenError, match="--only 'zzz' matches no section number, section file or run name"):
        select(project, ["zzz"])


GAN_SECTION = """
number = "2"
title = "GAN"
[[runs]]
name = "g"
kind = "gan"
generator = [8]
discriminator = [8]
[[views]]
kind = "mode_collapse"
run = "g"
classifier = "clf"
"""
CLASSIFIER_SECTION = """
number = "1"
title = "Classifier"
[[runs]]
name = "clf"
kind = "mlp"
hidden_layers = [8]
"""


def test_mode_collapse_view_needs_a_gan_of_its_section_and_a_classifier_run(make_project):
    text = "\n".join(problems_of(make_project({"experiments/g.toml": GAN_SECTION})))
    assert "g.toml [views[0].classifier]: expected the name of a classifier run" in text and "'clf'" in text
    wrong_run = GAN_SECTION.replace('run = "g"', 'run = "clf"')
    text = "\n".join(problems_of(make_project({"experiments/g.toml": wrong_run,
                                               "experiments/c.toml": CLASSIFIER_SECTION})))
    assert "g.toml [views[0].run]: expected one of this section's gan runs ['g'], got 'clf'" in text


def test_a_refused_run_is_reported_once_not_again_by_the_views_that_name_it(make_project):
    classifier = CLASSIFIER_SECTION + 'precision = "fp16"\n[[views]]\nkind = "misclassified"\nrun = "clf"\n'
    gan = GAN_SECTION.replace("discriminator = [8]", "discriminator = [8]\nprecision = \"fp16\"")
    problems = problems_of(make_project({"experiments/g.toml": gan, "experiments/c.toml": classifier}))
    assert len(problems) == 2, problems  # the two precisions; no view is blamed for naming their runs
    assert all("[runs[0].precision]" in p for p in problems), problems


def test_gan_settings_are_validated_like_any_other(make_project):
    bad = GAN_SECTION.replace("generator = [8]", "generator = []\nlabel_smoothing = 0.7\nnoise_dim = 0")
    text = "\n".join(problems_of(make_project({"experiments/g.toml": bad, "experiments/c.toml": CLASSIFIER_SECTION})))
    assert "[runs[0].generator]: List should have at least 1 item" in text
    assert "[runs[0].label_smoothing]: Input should be less than 0.5" in text
    assert "[runs[0].noise_dim]: Input should be greater than 0" in text


def test_selecting_a_gan_section_brings_its_classifier_first(make_project):
    root = make_project({"experiments/g.toml": GAN_SECTION, "experiments/c.toml": CLASSIFIER_SECTION})
    project = load_project(root)
    assert [e.name for e in select(project, ["2"])] == ["clf", "g"]
    assert [e.name for e in select(project, ["1"])] == ["clf"]


def test_a_misspelled_default_is_rejected_with_the_setting_it_resembles(make_project):
    root = make_project({"experiments/s.toml": 'number = "1"\ntitle = "t"\n[defaults]\nkind = "mlp"\n'
                                               'activaton = "tanh"\n[[runs]]\nname = "a"\nhidden_layers = [4]\n'})
    with pytest.raises(SpecError) as caught:
        load_project(root)
    message = str(caught.value)
    assert "s.toml [defaults.activaton]: unknown setting; did you mean 'activation'?" in message


def test_a_gan_setting_named_like_a_block_keeps_its_name_in_errors(make_project):
    root = make_project({"experiments/s.toml": 'number = "1"\ntitle = "t"\n[[runs]]\nname = "g"\nkind = "gan"\n'
                                               'dropout = -1\n'})
    with pytest.raises(SpecError) as caught:
        load_project(root)
    assert "s.toml [runs[0].dropout]: Input should be greater than or equal to 0, got -1" in str(caught.value)


@pytest.mark.parametrize("line, key, expected", [
    ("epochs = true", "epochs", "Input should be a valid integer, got True"),
    ("learning_rate = 1e999", "learning_rate", "Input should be a finite number"),
    ("seed = -1", "seed", "Input should be greater than or equal to 0"),
])
def test_values_toml_would_coerce_are_rejected(make_project, line, key, expected):
    root = make_project({"experiments/s.toml": f'number = "1"\ntitle = "t"\n[[runs]]\nname = "a"\nkind = "mlp"\n'
                                               f'hidden_layers = [4]\n{line}\n'})
    with pytest.raises(SpecError) as caught:
        load_project(root)
    assert f"s.toml [runs[0].{key}]: {expected}" in str(caught.value)


def test_a_key_named_like_a_kind_keeps_its_name_and_a_default_no_run_takes_is_reported(make_project):
    root = make_project({"experiments/project.toml": 'title = "t"\ndropout = 0.2\n',
                         "experiments/s.toml": 'number = "1"\ntitle = "t"\n[[runs]]\nname = "a"\nkind = "mlp"\n'
                                               'hidden_layers = [4]\n'})
    with pytest.raises(SpecError) as caught:
        load_project(root)
    assert "project.toml [dropout]: unknown key" in str(caught.value)
    root = make_project({"experiments/project.toml": 'title = "t"\n',
                         "experiments/s.toml": 'number = "1"\ntitle = "t"\n[defaults]\nnoise_dim = 50\n'
                                               '[[runs]]\nname = "a"\nkind = "mlp"\nhidden_layers = [4]\n'})
    with pytest.raises(SpecError) as caught:
        load_project(root)
    assert "s.toml [defaults.noise_dim]: applies to no run of this section (its runs are of kind ['mlp'])" \
        in str(caught.value)


@pytest.mark.slow
def test_the_default_learning_rates_the_report_names_are_keras_own():
    import keras

    from reportgen.project.spec import KERAS_LEARNING_RATES

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
               "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam}
    assert set(KERAS_LEARNING_RATES) == set(classes)
    for name, rate in KERAS_LEARNING_RATES.items():
        assert float(keras.ops.convert_to_numpy(classes[name]().learning_rate)) == pytest.approx(rate), name


TRAINING = """
number = "1"
title = "Training settings"
[defaults]
kind = "mlp"
hidden_layers = [8]
[[runs]]
name = "heavy-ball"
optimizer = "sgd"
learning_rate = 0.05
momentum = 0.9
nesterov = true
clipnorm = 1.0
schedule = { type = "step", every = 2, factor = 0.5 }
early_stopping = { monitor = "val_accuracy", patience = 1 }
[[runs]]
name = "plain"
"""


def test_training_settings_courses_use_are_read_and_listed_only_when_given(make_project):
    project = load_project(make_project({"experiments/1.toml": TRAINING}))
    heavy, plain = project.experiments
    assert heavy.model.momentum == 0.9 and heavy.model.nesterov and heavy.model.clipnorm == 1.0
    assert heavy.model.schedule.every == 2 and heavy.model.early_stopping.patience == 1
    config = heavy.config()
    assert config["momentum"] == 0.9 and config["schedule"] == {"type": "step", "every": 2, "factor": 0.5}
    assert config["early_stopping"] == {"monitor": "val_accuracy", "patience": 1, "min_delta": 0.0,
                                        "restore_best": True}
    # Left out, they are not part of the configuration (nor of the cache key).
    assert not {"momentum", "nesterov", "beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm", "schedule",
                "early_stopping"} & set(plain.config())


@pytest.mark.parametrize(("setting", "expected"), [
    ("momentum = 0.9", "[runs[0].momentum]: only sgd and rmsprop take it, and this run's optimizer is 'adam'"),
    ("nesterov = true", "[runs[0].nesterov]: only sgd take it"),
    ('optimizer = "sgd"\nbeta_2 = 0.99', "[runs[0].beta_2]: only adam and adamw and nadam take it"),
    ('schedule = { type = "linear" }', "[runs[0].schedule.type]: expected one of 'step', 'exponential', 'cosine'"),
    ("early_stopping = { patience = -1 }", "[runs[0].early_stopping.patience]: Input should be greater than or "
                                           "equal to 0"),
])
def test_a_setting_the_optimizer_does_not_take_is_named(make_project, setting, expected):
    section = f'number = "1"\ntitle = "T"\n[[runs]]\nname = "r"\nkind = "mlp"\nhidden_layers = [8]\n{setting}\n'
    text = "\n".join(problems_of(make_project({"experiments/1.toml": section})))
    assert expected in text


def test_a_gan_takes_no_schedule_nor_early_stopping(make_project):
    section = 'number = "1"\ntitle = "T"\n[[runs]]\nname = "g"\nkind = "gan"\nearly_stopping = { patience = 2 }\n'
    text = "\n".join(problems_of(make_project({"experiments/1.toml": section})))
    assert "[runs[0].early_stopping]: a gan run takes no early stopping" in text


def test_a_custom_builders_parameters_are_grid_axes_and_name_runs(make_project):
    section = """
    number = "1"
    title = "Dropout"
    [[runs]]
    name = "net-{dropout}-{width}"
    kind = "custom"
    builder = "nets:dense"
    params = { width = 32 }
    [runs.grid]
    dropout = [0.1, 0.5]
    """
    project = load_project(make_project({"experiments/1.toml": section}))
    assert [e.name for e in project.experiments] == ["net-0.1-32", "net-0.5-32"]
    assert [e.model.params for e in project.experiments] == [{"width": 32, "dropout": 0.1},
                                                             {"width": 32, "dropout": 0.5}]
    assert project.experiments[1].axes == {"dropout": 0.5}


def test_a_misspelled_grid_axis_is_one_error_with_the_nearest_key(make_project):
    section = """
    number = "1"
    title = "L2"
    [[runs]]
    name = "l2-{strenght}"
    kind = "mlp"
    hidden_layers = [8]
    regularizer = "l2"
    [runs.grid]
    strenght = [0.0, 0.01, 0.1]
    """
    problems = problems_of(make_project({"experiments/1.toml": section}))
    assert len(problems) == 1, problems
    assert problems[0].endswith("[runs[0].grid.strenght]: unknown key for a mlp run; did you mean 'strength'?")


def test_a_name_template_naming_nothing_says_what_it_may_name(make_project):
    section = """
    number = "1"
    title = "L2"
    [[runs]]
    name = "l2-{lambda}"
    kind = "mlp"
    hidden_layers = [8]
    [runs.grid]
    strength = [0.0, 0.01]
    """
    text = "\n".join(problems_of(make_project({"experiments/1.toml": section})))
    assert "[runs[0].name]: name template 'l2-{lambda}' names no setting: 'lambda'; it may name [" in text
    assert "'strength'" in text


def test_sections_may_carry_any_short_label_and_sort_by_order(make_project):
    run = '[[runs]]\nname = "{name}"\nkind = "mlp"\nhidden_layers = [8]\n'
    root = make_project({
        "experiments/a.toml": 'number = "A"\ntitle = "First by order"\norder = 0.5\n' + run.format(name="a"),
        "experiments/b.toml": 'number = "2b"\ntitle = "Last: no order, no number"\n' + run.format(name="b"),
        "experiments/appendix.toml": 'title = "Labelled by its file"\norder = 9\n' + run.format(name="c"),
        "experiments/1.toml": 'number = "1"\ntitle = "Numbered"\n' + run.format(name="d"),
    })
    project = load_project(root)
    assert [s.number for s in project.sections] == ["A", "1", "appendix", "2b"]
    assert [e.name for e in select(project, ["appendix"])] == ["c"]
    bad = make_project({"experiments/x.toml": 'number = "a very long label that goes on"\ntitle = "T"\n'
                                              + run.format(name="x")})
    assert any("[number]: String should match pattern" in p for p in problems_of(bad))


def test_a_shared_default_leaves_a_kinds_own_default_alone_and_says_so(make_project):
    root = make_project({
        "experiments/project.toml": 'title = "T"\ndata = "mnist-sample"\n[defaults]\nlearning_rate = 0.01\n'
                                    "epochs = 10\n[defaults.gan]\nbeta_1 = 0.6\n",
        "experiments/1.toml": 'number = "1"\ntitle = "A"\n[[runs]]\nname = "net"\nkind = "mlp"\n'
                              'hidden_layers = [8]\n[[runs]]\nname = "gan"\nkind = "gan"\n'})
    project = load_project(root)
    net, gan = project.experiments
    assert net.model.learning_rate == 0.01
    assert gan.model.learning_rate == 2e-4 and gan.model.beta_1 == 0.6  # its own default; the gan table's
    assert any("project.toml: the shared default learning_rate = 0.01 is not applied to gan runs, which keep their "
               "own default 0.0002; set [defaults.gan] learning_rate to change it" in n for n in project.notes)
    quick = load_project(root, "quick")
    assert any("the quick profile trains 2 run(s) for 2 epoch(s) instead of their own (net, gan)" in n
               for n in quick.notes)
    bad = make_project({"experiments/project.toml": 'title = "T"\n[defaults.gan]\nlerning_rate = 0.1\n',
                        "experiments/1.toml": 'number = "1"\ntitle = "A"\n[[runs]]\nname = "g"\nkind = "gan"\n'})
    assert any("[defaults.gan.lerning_rate]: unknown setting of a gan run; did you mean 'learning_rate'?" in p
               for p in problems_of(bad))


def test_dropout_and_batch_norm_per_layer_are_listed_only_when_given(make_project):
    section = """
    number = "1"
    title = "Regularised"
    [[runs]]
    name = "plain"
    kind = "mlp"
    hidden_layers = [64, 32]
    [[runs]]
    name = "dropped"
    kind = "mlp"
    hidden_layers = [64, 32]
    dropout = [0.5, 0.2]
    batch_norm = true
    [[runs]]
    name = "conv"
    kind = "cnn"
    blocks = [{ type = "conv", filters = 4, kernel = 3 }, { type = "batchnorm" }, { type = "dropout", rate = 0.25 }]
    """
    plain, dropped, conv = load_project(make_project({"experiments/1.toml": section})).experiments
    assert "dropout" not in plain.config() and "batch_norm" not in plain.config()
    assert dropped.model.dropout_after(1) == 0.2 and dropped.config()["batch_norm"] is True
    assert conv.model.blocks[1].type == "batchnorm"
    wrong = section.replace("dropout = [0.5, 0.2]", "dropout = [0.5]")
    text = "\n".join(problems_of(make_project({"experiments/1.toml": wrong})))
    assert "[runs[1].dropout]: 1 rate(s) for 2 hidden layer(s); give one rate per layer" in text


def test_a_runs_settings_are_shown_as_toml_that_reads_back_as_its_configuration():
    import tomllib

    for exp in load_project(REPO).experiments:
        shown = tomllib.loads(exp.code_cell())
        config = {k: v for k, v in exp.config().items() if k != "name" and v is not None}
        if exp.config().get("learning_rate") is None:
            assert shown.pop("learning_rate") > 0  # Keras' default, shown as its value
        assert shown.pop("repeats", 1) == exp.repeats  # how many times it trains, not part of a repeat's key
        assert shown == config, exp.name
    cnn = next(e for e in load_project(REPO).experiments if e.model.kind == "cnn").code_cell()
    assert 'blocks = [{ type = "conv", filters = ' in cnn and 'kind = "cnn"' in cnn


def test_percent_digits_is_the_projects_and_out_of_range_is_named(make_project):
    section = {"experiments/1.toml": 'number = "1"\ntitle = "T"\n'}
    root = make_project({"experiments/project.toml": 'title = "P"\npercent_digits = 1\n', **section})
    assert load_project(root).percent_digits == 1
    root = make_project({"experiments/project.toml": 'title = "P"\npercent_digits = 7\n', **section})
    (problem,) = problems_of(root)
    assert "project.toml [percent_digits]" in problem and "less than or equal to 4" in problem
