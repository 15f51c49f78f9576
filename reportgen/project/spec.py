"""Read and validate the experiment files: the first stage, and the only one that reads experiments/.

A project is a folder holding `experiments/project.toml` (title, author, data set, profiles) and
one TOML file per report section, each beside its Markdown commentary of the same stem.
Everything is validated before anything trains, and every problem is reported at once.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import itertools
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator

from reportgen.errors import Problem, ReportgenError, SpecError
from reportgen.project.settings import Precision
from reportgen.project.sources import NAMES, SOURCE, SOURCES
from reportgen.project.sources import label as data_label
from reportgen.project.views import adapter as view_adapter
from reportgen.project.views import registered as registered_views

EXPERIMENTS_DIR = "experiments"
PROJECT_FILE = "project.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# A run trained `repeats` times: repeat i > 1 is an experiment of its own, named "<run>#<i>" (a name
# no run can take), with a seed derived from the run's; repeat 1 is the run itself, seed and all.
REPEAT_MARK = "#"
REPEATS_MAX = 100
REPEATS = "repeats"
# A section's label: "1.3", "A", "2b", "Appendix B". Dotted numbers also give its place; other
# labels sort by `order`, and after the numbered sections (in file-name order) without one.
SECTION_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,23}$")
SECTION_NUMBER_RE = re.compile(r"^\d+(\.\d+)*$")



class _Strict(BaseModel):
    # strict: TOML has real types, so `epochs = true` or `seed = 1.5` is a mistake, not a 1;
    # no inf or nan either (`learning_rate = 1e999`).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# --- experiments ------------------------------------------------------------------------------


class StepSchedule(_Strict):
    """The learning rate times `factor` every `every` epochs."""

    type: Literal["step"]
    every: Annotated[int, Field(gt=0)]
    factor: Annotated[float, Field(gt=0, le=1)] = 0.1


class ExponentialSchedule(_Strict):
    """The learning rate times `factor` each epoch, smoothly (step by step)."""

    type: Literal["exponential"]
    factor: Annotated[float, Field(gt=0, lt=1)]


class CosineSchedule(_Strict):
    """The learning rate down a half cosine over the run, to `final` times its start."""

    type: Literal["cosine"]
    final: Annotated[float, Field(ge=0, lt=1)] = 0.0


Schedule = Annotated[StepSchedule | ExponentialSchedule | CosineSchedule, Field(discriminator="type")]


class EarlyStopping(_Strict):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs; with
    `restore_best`, the run keeps the weights of its best epoch."""

    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    patience: Annotated[int, Field(ge=0, le=1000)] = 3
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    restore_best: bool = True


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
# Which optimizers take which setting (Keras' own arguments of the same names).
TAKES = {"momentum": ("sgd", "rmsprop"), "nesterov": ("sgd",), "beta_1": ("adam", "adamw", "nadam"),
         "beta_2": ("adam", "adamw", "nadam")}
# Settings a configuration lists only when given: left out, Keras' defaults apply (and keys made
# before these settings existed still match).
OPTIONAL_TRAINING = ("momentum", "nesterov", "beta_2", "epsilon", "weight_decay", "clipnorm", "schedule",
                     "early_stopping")
OPTIONAL_BY_KIND = {"mlp": ("dropout", "batch_norm")}  # a kind's settings added later, listed only when given


class _Training(_Strict):
    """Settings every kind shares: how a model is fitted."""

    optimizer: Literal["adam", "adamw", "sgd", "rmsprop", "nadam"] = "adam"
    learning_rate: Annotated[float, Field(gt=0)] | None = None  # None: the optimizer's default
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None  # sgd, rmsprop
    nesterov: bool = False  # sgd
    beta_1: Annotated[float, Field(ge=0, lt=1)] | None = None  # adam, adamw, nadam
    beta_2: Annotated[float, Field(ge=0, lt=1)] | None = None  # adam, adamw, nadam
    epsilon: Annotated[float, Field(gt=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None  # decoupled, as Keras applies it
    clipnorm: Annotated[float, Field(gt=0)] | None = None  # each gradient's norm at most this
    schedule: Schedule | None = None  # how the learning rate changes over the run
    early_stopping: EarlyStopping | None = None
    batch_size: Annotated[int, Field(gt=0, le=65536)] = 128
    epochs: Annotated[int, Field(gt=0, le=10000)] = 10
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 1
    # Opt-in mixed precision: bfloat16 compute, float32 weights and outputs. Fast where the
    # hardware has bfloat16 units (recent x86 CPUs with AVX512_BF16/AMX, GPUs from Ampere on).
    precision: Precision = "float32"

    @field_validator("momentum", "nesterov", "beta_1", "beta_2")
    @classmethod
    def _taken_by_the_optimizer(cls, value: Any, info: ValidationInfo) -> Any:
        optimizers, optimizer = TAKES[str(info.field_name)], info.data.get("optimizer")
        if value not in (None, False) and optimizer is not None and optimizer not in optimizers:
            raise ValueError(f"only {' and '.join(optimizers)} take it, and this run's optimizer is {optimizer!r}")
        return value


Activation = Literal["relu", "tanh", "sigmoid", "elu", "gelu", "selu", "softplus", "linear"]


Rate = Annotated[float, Field(ge=0, lt=1)]


class MLPSpec(_Training):
    """Dense network: flatten, then per hidden layer Dense (+ BatchNormalization) + Activation
    (+ Dropout), then Dense(classes) + softmax."""

    kind: Literal["mlp"]
    hidden_layers: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=0)]
    activation: Activation = "relu"
    regularizer: Literal["none", "l1", "l2"] = "none"
    strength: Annotated[float, Field(ge=0)] = 0.0
    dropout: Rate | list[Rate] = 0.0  # after each hidden layer: one rate for all, or one per layer
    batch_norm: bool = False  # BatchNormalization between each hidden Dense and its activation

    @field_validator("dropout")
    @classmethod
    def _one_rate_per_layer(cls, value: Any, info: ValidationInfo) -> Any:
        layers = info.data.get("hidden_layers")
        if isinstance(value, list) and layers is not None and len(value) != len(layers):
            raise ValueError(f"{len(value)} rate(s) for {len(layers)} hidden layer(s); give one rate per layer, "
                             "or a single rate for all")
        return value

    def dropout_after(self, layer: int) -> float:
        return self.dropout[layer] if isinstance(self.dropout, list) else self.dropout


class ConvBlock(_Strict):
    type: Literal["conv"]
    filters: Annotated[int, Field(gt=0)]
    kernel: Annotated[int, Field(gt=0)]
    padding: Literal["same", "valid"] = "same"
    activation: Activation = "relu"


class PoolBlock(_Strict):
    type: Literal["pool"]
    size: Annotated[int, Field(gt=0)] = 2


class DropoutBlock(_Strict):
    type: Literal["dropout"]
    rate: Annotated[float, Field(ge=0, lt=1)]


class BatchNormBlock(_Strict):
    type: Literal["batchnorm"]


Block = Annotated[ConvBlock | PoolBlock | DropoutBlock | BatchNormBlock, Field(discriminator="type")]


class CNNSpec(_Training):
    """Convolutional network: the blocks in order, then Flatten > Dense(10) > softmax."""

    kind: Literal["cnn"]
    blocks: Annotated[list[Block], Field(min_length=1)]


class CustomSpec(_Training):
    """Any Keras model: `builder = "module:function"` names a function in experiments/ that
    returns an uncompiled model; `params` are passed to it as keyword arguments."""

    kind: Literal["custom"]
    builder: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*$")]
    params: dict[str, Any] = Field(default_factory=dict)


GanActivation = Literal["leaky_relu", "relu", "tanh", "elu", "gelu", "selu"]


class GANSpec(_Training):
    """Generative adversarial network of Dense layers on the training images (labels unused).

    The discriminator ends in Dense(1) + sigmoid, the generator in Dense(pixels of one image) + `generator_output`.
    Each step updates the discriminator on a batch of real and a batch of generated images, then
    the generator through the discriminator; an epoch is len(train) // batch_size such steps."""

    kind: Literal["gan"]
    learning_rate: Annotated[float, Field(gt=0)] | None = 2e-4
    beta_1: Annotated[float, Field(ge=0, lt=1)] = 0.5  # Adam-family optimizers only
    noise_dim: Annotated[int, Field(gt=0, le=4096)] = 100
    generator: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [256, 512, 1024]
    discriminator: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [1024, 512, 256]
    activation: GanActivation = "leaky_relu"
    leaky_slope: Annotated[float, Field(ge=0, lt=1)] = 0.2
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3  # after each discriminator hidden layer
    generator_output: Literal["tanh", "sigmoid"] = "tanh"
    label_smoothing: Annotated[float, Field(ge=0, lt=0.5)] = 0.0  # one-sided: real labels 1 - this
    regularizer: Literal["none", "l1", "l2"] = "none"
    strength: Annotated[float, Field(ge=0)] = 0.0
    samples: Annotated[int, Field(ge=16, le=10000)] = 1000  # generated each epoch from one fixed noise batch

    @field_validator("schedule", "early_stopping")
    @classmethod
    def _classifiers_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise ValueError(f"a gan run takes no {str(info.field_name).replace('_', ' ')} (it has no validation "
                             "metric to watch, and its two optimizers keep one rate); remove the key")
        return value


ModelSpec = Annotated[MLPSpec | CNNSpec | CustomSpec | GANSpec, Field(discriminator="kind")]
AnyModel = MLPSpec | CNNSpec | CustomSpec | GANSpec
_MODEL_ADAPTER: TypeAdapter[AnyModel] = TypeAdapter(ModelSpec)
KINDS = ("mlp", "cnn", "custom", "gan")


def parse_model(settings: dict[str, Any]) -> AnyModel:
    """A model's settings (as Experiment.config() records them, less name and data) validated into
    its spec; raises pydantic's ValidationError."""
    return _MODEL_ADAPTER.validate_python(settings)
CLASSIFIER_KINDS = ("mlp", "cnn", "custom")
# What a run of each kind may set: its model's settings, and how many times it is trained.
_KIND_FIELDS = {"mlp": set(MLPSpec.model_fields) | {REPEATS}, "cnn": set(CNNSpec.model_fields) | {REPEATS},
                "custom": set(CustomSpec.model_fields) | {REPEATS}, "gan": set(GANSpec.model_fields) | {REPEATS}}


# --- section views: the figure or table that answers a section's question ---------------------


class ViewSettings(_Strict):
    """What every view's settings share. Each kind subclasses it in its own module under
    reportgen/views/, with `kind: Literal["<its name>"]`, and is found through the registry
    (reportgen.project.views); the checks that need more than its own settings are its methods."""

    # The author's caption for the view's figure(s), shown as plain text instead of the default one.
    caption: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    kind: str

    def section_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        """(key within the view, message) for each way the view does not fit its section. `kinds`: the
        section's valid runs, name to model kind; `refused`: runs whose settings were refused (already
        reported: a view naming one waits for it). A view with a problem is left out."""
        return []

    def project_problems(self, kinds: Mapping[str, str], refused: AbstractSet[str]) -> list[tuple[str, str]]:
        """As section_problems, for what the view names elsewhere in the project; `kinds`: every valid
        run of the project."""
        return []

    def dependencies(self, run: str) -> list[str]:
        """Runs of other sections whose results `run` (of this view's section) needs besides its own."""
        return []


def _union_tags() -> set[str]:
    """The tags of the tagged unions pydantic names in an error's location (model kinds, blocks, views)."""
    return {*KINDS, "conv", "pool", "dropout", "batchnorm", *registered_views(), *SOURCES}


# --- files as written -------------------------------------------------------------------------


QUICK_TRAIN, QUICK_VALIDATION = 2000, 500  # the quick profile's sample of a data set other than the MNIST sample


class QuickProfile(_Strict):
    epochs: Annotated[int, Field(gt=0)] = 2
    # Default: the offline MNIST sample where the project's data are MNIST, else the project's data.
    data: Any = None  # checked by _data_spec, as ProjectFile.data
    # A stratified, seeded sample of at most this many training / validation examples (default:
    # 2,000 / 500, except for the MNIST sample, used whole).
    train: Annotated[int, Field(gt=0)] | None = None
    validation: Annotated[int, Field(gt=0)] | None = None


Short = Annotated[str, Field(max_length=200)]
# Where a section's per-run detail (settings, layers, epoch log) goes: an appendix entry per run,
# linked from the run's name in the section (the default), inside the section, or nowhere.
Details = Literal["appendix", "inline", "none"]


class ProjectFile(_Strict):
    title: Annotated[str, Field(min_length=1)]
    author: str = ""
    # The title page's and the PDF's metadata, each optional.
    student_id: Short = ""
    course: Short = ""
    institution: Short = ""
    subject: Short = ""  # the PDF's Subject (default: the course)
    keywords: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(default_factory=list)
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"  # the document's
    data: Any = "auto"  # a name or a table: checked by _data_spec, which names the keys as written
    defaults: dict[str, Any] = Field(default_factory=dict)
    quick: QuickProfile = Field(default_factory=QuickProfile)
    page_limit: Annotated[int, Field(gt=0)] | None = None  # the main body's pages, checked by `reportgen check`
    details: Details = "appendix"  # every section's, unless it says otherwise
    # Decimals of every accuracy and share the report prints as a percentage (97.01% at 2).
    percent_digits: Annotated[int, Field(ge=0, le=4)] = 2


class RunTable(BaseModel):
    """One `[[runs]]` entry: a name (a template when there is a grid), settings and a grid."""

    model_config = ConfigDict(extra="allow")
    name: Annotated[str, Field(min_length=1)]
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class SectionFile(_Strict):
    number: Annotated[str, Field(pattern=SECTION_LABEL_RE.pattern)] | None = None  # default: the file's stem
    title: Annotated[str, Field(min_length=1)]
    order: float | None = None
    commentary: str | None = None
    attach: str | None = None
    # What the contents and the bookmark call the attached PDF (default: its file name).
    attach_title: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    # The question the section answers, shown first (Markdown, without placeholders).
    question: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    details: Details | None = None  # default: the project's
    defaults: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    views: list[dict[str, Any]] = Field(default_factory=list)


# --- resolved project -------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    """One run after grid expansion, defaults filled in: the unit that is trained and cached."""

    name: str
    section: str
    model: AnyModel
    data: str
    source: Path
    swept: tuple[tuple[str, Any], ...] = ()  # the grid axes this run was expanded from, and its values
    repeats: int = 1  # how many times the run is trained, each with its own seed
    repeat: int = 1  # which of them this is: 1 is the run as declared

    @property
    def run(self) -> str:
        """The declared run's name: the same for each of its repeats."""
        return self.name.split(REPEAT_MARK)[0]

    def repeated(self, i: int) -> Experiment:
        """Repeat i (1-based) of this run: the run itself for 1, else named "<run>#<i>" with the seed
        repeat_seed(seed, i). Its configuration, and so its cache key, is its own: raising `repeats`
        trains only the repeats added, lowering it trains nothing."""
        if i == 1:
            return self
        return replace(self, name=f"{self.run}{REPEAT_MARK}{i}", repeat=i,
                       model=self.model.model_copy(update={"seed": repeat_seed(self.model.seed, i)}))

    def with_repeats(self) -> list[Experiment]:
        """Every repeat of this run, the run itself first."""
        return [self.repeated(i) for i in range(1, self.repeats + 1)]

    @property
    def axes(self) -> dict[str, Any]:
        """Its value of each grid axis of its run table (a builder's parameter included)."""
        return dict(self.swept)

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as stored beside its result and hashed into its key."""
        settings = self.model.model_dump(mode="json")
        for key in (*OPTIONAL_TRAINING, *OPTIONAL_BY_KIND.get(self.model.kind, ())):  # listed only when given
            if key in settings and settings[key] == type(self.model).model_fields[key].default:
                del settings[key]
        if settings.get("beta_1", 0) is None:
            del settings["beta_1"]
        return {"name": self.name, "data": self.data, **settings}

    def code_cell(self) -> str:
        """The configuration as TOML, as a user would write it in the run's table: what distinguishes
        the model first, then how it was trained, then the data. A setting left to Keras shows the
        value Keras uses, marked as its default."""
        config = self.config()
        model_keys = [k for k in config if k not in _Training.model_fields and k not in ("name", "data")]
        ordered = model_keys + list(_Training.model_fields) + ["data"]
        lines = [f"{REPEATS} = {self.repeats}"] if self.repeats > 1 else []
        for key in ordered:
            if key not in config:
                continue
            value = config[key]
            if key == "learning_rate" and value is None and config.get("optimizer") in KERAS_LEARNING_RATES:
                lines.append(f"learning_rate = {toml_value(KERAS_LEARNING_RATES[config['optimizer']])}"
                             f"  # Keras' default for {config['optimizer']}")
            elif value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines)


def repeat_seed(seed: int, i: int) -> int:
    """The seed of repeat i of a run whose seed is `seed`: the seed itself for the first repeat, else
    32 bits of a hash of both, so that neighbouring seeds' repeats do not overlap."""
    if i == 1:
        return seed
    return int.from_bytes(hashlib.sha256(f"reportgen repeat {seed} {i}".encode()).digest()[:4], "big")


# The rate each optimizer trains with when a run sets none (Keras 3's defaults), for the report.
KERAS_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3, "nadam": 1e-3}


@dataclass(frozen=True)
class Section:
    number: str
    title: str
    order: tuple[float, ...]
    source: Path
    commentary: Path
    experiments: tuple[Experiment, ...]
    views: tuple[ViewSettings, ...]
    attach: Path | None = None
    attach_title: str | None = None
    question: str | None = None
    details: str = "appendix"

    @property
    def slug(self) -> str:
        return self.source.stem


@dataclass(frozen=True)
class Project:
    root: Path
    title: str
    author: str
    data: str | BaseModel  # a data set's name, or a sources.Source table
    profile: str
    sections: tuple[Section, ...]
    page_limit: int | None = None
    sample: tuple[int, int] | None = None  # the quick profile's stratified sample: training, validation
    notes: tuple[str, ...] = ()  # how settings were applied that a build should say (profile overrides, defaults)
    about: tuple[tuple[str, Any], ...] = ()  # student_id, course, institution, subject, keywords, language
    percent_digits: int = 2  # decimals of a percentage, everywhere the report prints one

    @property
    def experiments(self) -> list[Experiment]:
        """The declared runs (each run once, however many repeats it has)."""
        return [e for s in self.sections for e in s.experiments]

    @property
    def trained(self) -> list[Experiment]:
        """What a build trains and caches: every repeat of every run, each run's first."""
        return [r for e in self.experiments for r in e.with_repeats()]

    @property
    def experiments_dir(self) -> Path:
        return self.root / EXPERIMENTS_DIR


def toml_value(value: Any) -> str:
    """A value as TOML writes it: lists in brackets, tables inline, strings in double quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if ("e" in f"{value:g}" or "." in f"{value:g}") else f"{value:g}.0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_part(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(_name_part(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _read_toml(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(path, "", f"cannot be read: {exc}"))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line L, column C)"; it reports duplicate keys
        # and syntax errors alike.
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found[1]) if found else (text.count("\n") + 1 if "end of document" in str(exc) else None)
        problems.append(Problem(path, "", f"invalid TOML: {exc}", line=line))
        return None


def _pydantic_problems(path: Path, prefix: str, exc: ValidationError, tagged: bool = False) -> list[Problem]:
    """One Problem per pydantic error. `tagged`: the value was validated as a tagged union (a model or
    a view), whose member pydantic names by its tag in the error's location."""
    out = []
    tags = _union_tags() if tagged else set()
    for err in exc.errors():
        # Keys as written: list indices in brackets, and without the union tags pydantic inserts.
        parts = [prefix] if prefix else []
        loc = err["loc"]
        for i, part in enumerate(loc):
            if isinstance(part, int):
                parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
            # pydantic names the member of a tagged union by its tag, first or right after a list
            # index; elsewhere the same word is a real key (a gan's `dropout`, not the dropout block).
            elif not (tagged and part in tags and (i == 0 or isinstance(loc[i - 1], int))):
                parts.append(str(part))
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            parts.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
        key = ".".join(p for p in parts if p)
        msg = err["msg"]
        if err["type"] in ("extra_forbidden",):
            msg = "unknown key"
        elif err["type"] in ("missing", "union_tag_not_found"):
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"expected one of {ctx.get('expected_tags')}, got {ctx.get('tag')!r}"
        elif err["type"] == "value_error":  # a check across keys: its message names them
            msg = str(err.get("ctx", {}).get("error", msg))
        elif "input" in err:
            msg += f", got {err['input']!r}"
        out.append(Problem(path, key, msg))
    return out


def _index_loc(prefix: str, index: int) -> str:
    return f"{prefix}[{index}]"


SETTINGS = sorted({"kind"} | set().union(*_KIND_FIELDS.values()))
# Settings whose default a kind documents as its own (a gan's learning rate is 2e-4, not the
# optimizer's): a project's or section's shared [defaults] leave them alone, [defaults.<kind>] sets them.
KIND_OWN_DEFAULTS = {kind: {k: f.default for k, f in model.model_fields.items()
                            if k in _Training.model_fields and f.default != _Training.model_fields[k].default}
                     for kind, model in (("mlp", MLPSpec), ("cnn", CNNSpec), ("custom", CustomSpec), ("gan", GANSpec))}
KIND_OWN_DEFAULTS = {k: v for k, v in KIND_OWN_DEFAULTS.items() if v}


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _check_defaults(path: Path, defaults: dict[str, Any], problems: list[Problem]) -> None:
    """Defaults apply to each run whose kind has the setting, so no run rejects an unknown one:
    catch misspellings here."""
    for key, value in defaults.items():
        if key in _KIND_FIELDS and isinstance(value, dict):  # [defaults.gan]: that kind's runs only
            for inner in value:
                if inner not in _KIND_FIELDS[key] or inner == "kind":
                    close = difflib.get_close_matches(inner, sorted(_KIND_FIELDS[key] - {"kind"}), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    problems.append(Problem(path, f"defaults.{key}.{inner}", f"unknown setting of a {key} run; {hint}"
                                            f"expected one of {sorted(_KIND_FIELDS[key] - {'kind'})}"))
            continue
        if key not in SETTINGS:
            close = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(Problem(path, f"defaults.{key}", f"unknown setting; {hint}expected a setting of some "
                                    f"model kind, one of {SETTINGS}"))


def _origin(key: str, where: str, grid: dict[str, Any], run: dict[str, Any], section: dict[str, Any],
            project: dict[str, Any]) -> str:
    """Where a run's setting was written: its grid or its table, its section's or the project's defaults."""
    top = key.split(".")[0].split("[")[0]
    return (f"{where}.grid.{key}" if top in grid else
            f"{where}.{key}" if top in run else
            f"defaults.{key}" if top in section else
            f"{PROJECT_FILE} defaults.{key}" if top in project else
            f"{where}.{key}")


def _expand_runs(
    path: Path, section: SectionFile, project_defaults: dict[str, Any], data: str,
    problems: list[Problem], used: set[str] | None = None, invalid: set[str] | None = None,
    notes: list[str] | None = None,
) -> list[Experiment]:
    """The section's runs with grids expanded and defaults applied; `used` collects the default
    settings some run took (a default no run takes is a mistake the caller reports), `invalid` the
    names of runs whose settings were refused (already reported: views naming them are not)."""
    used = used if used is not None else set()
    invalid = invalid if invalid is not None else set()
    experiments: list[Experiment] = []
    for i, raw in enumerate(section.runs):
        where = _index_loc("runs", i)
        try:
            table = RunTable.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, where, exc))
            continue
        settings = {k: v for k, v in raw.items() if k not in ("name", "grid")}
        empty = [k for k, v in table.grid.items() if len(v) == 0]
        for k in empty:
            problems.append(Problem(path, f"{where}.grid.{k}", "grid expands to nothing: give at least one value"))
        # Still check the rest of the run (with the empty keys left out) so every problem shows at once.
        grid = {k: v for k, v in table.grid.items() if v}
        for k in grid:
            if k in settings:
                problems.append(Problem(path, f"{where}.grid.{k}",
                                        "set both as a grid and as a single value; keep one"))
        kind = settings.get("kind", section.defaults.get("kind", project_defaults.get("kind")))
        accepted = _KIND_FIELDS.get(str(kind), None)
        dropped: set[str] = set()
        if accepted is not None:
            # A key the run's kind does not have: once, with the nearest it does have, instead of once
            # per expanded run. A custom builder's own parameters may be grid axes (they go to params).
            unknown = [(f"{where}.grid.{k}" if k in grid else f"{where}.{k}", k)
                       for k in [*settings, *grid] if k not in accepted and k != "kind"
                       and not (kind == "custom" and k in grid)]
            for key, name in unknown:
                near = difflib.get_close_matches(name, sorted(accepted - {"kind"}), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; a {kind} run takes {sorted(accepted - {'kind'})}"
                problems.append(Problem(path, key, f"unknown key for a {kind} run{hint}"))
            # The rest of the run is still checked, without those keys, so every problem shows at once.
            dropped = {name for _, name in unknown}
            settings = {k: v for k, v in settings.items() if k not in dropped}
            grid = {k: v for k, v in grid.items() if k not in dropped}
        if REPEATS in grid:
            problems.append(Problem(path, f"{where}.grid.{REPEATS}", "a number of trainings, not a grid axis: give "
                                    f"`{REPEATS} = N` on the run (each repeat gets its own seed)"))
            grid = {k: v for k, v in grid.items() if k != REPEATS}
        keys = list(grid)
        combos = list(itertools.product(*(grid[k] for k in keys))) if keys else [()]
        if keys and "{" not in table.name and len(combos) > 1:
            problems.append(Problem(
                path, f"{where}.name",
                f"a grid of {len(combos)} runs needs a name template naming its keys, "
                f"e.g. {table.name + '-' + '-'.join('{' + k + '}' for k in keys)!r}",
            ))
            continue
        for combo in combos:
            values = dict(zip(keys, combo, strict=True))
            explicit = {**settings, **values}
            # Shared defaults apply where the run's kind has such a setting: a section of dense
            # nets may still hold one custom model that has no `activation`.
            # The project's shared defaults leave a kind's own defaults alone (a project-wide learning
            # rate for the dense nets is not the gan's); a section's defaults, written for its runs, apply.
            own = KIND_OWN_DEFAULTS.get(str(kind), {})
            project_shared = {k: v for k, v in project_defaults.items()
                              if not (k in _KIND_FIELDS and isinstance(v, dict))}
            for k, v in project_shared.items():
                if k in own and k not in section.defaults and k not in explicit:  # said once, by the caller
                    (notes if notes is not None else []).append(
                        f"{PROJECT_FILE}: the shared default {k} = {v!r} is not applied to {kind} runs, which keep "
                        f"their own default {own[k]!r}; set [defaults.{kind}] {k} to change it")
            shared = {**{k: v for k, v in project_shared.items() if k not in own},
                      **{k: v for k, v in section.defaults.items() if not (k in _KIND_FIELDS and isinstance(v, dict))}}
            scoped = {**_as_dict(project_defaults.get(str(kind))), **_as_dict(section.defaults.get(str(kind)))}
            defaults = {**{k: v for k, v in shared.items() if accepted is None or k in accepted}, **scoped}
            used.update(k for k in defaults if k not in scoped)
            merged = {**defaults, **explicit}
            own = {k: v for k, v in values.items() if k not in _KIND_FIELDS["custom"]}
            if kind == "custom" and own and isinstance(merged.get("params", {}), dict):
                # Grid axes that are not a run's settings are the builder's parameters.
                merged = {**{k: v for k, v in merged.items() if k not in own},
                          "params": {**merged.get("params", {}), **own}}
            try:
                found = merged.get("params")
                params: dict[str, Any] = found if isinstance(found, dict) else {}
                fields = {**dict.fromkeys([*empty, *dropped], ""), **{k: _name_part(v) for k, v in params.items()},
                          **{k: _name_part(v) for k, v in merged.items() if not isinstance(v, dict)}}
                name = table.name.format(**fields)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                problems.append(Problem(path, f"{where}.name", f"name template {table.name!r} names no setting: "
                                        f"{exc}; it may name {sorted(k for k in fields if fields[k])}"))
                break
            if not NAME_RE.match(name) and not empty and not dropped:
                problems.append(Problem(path, f"{where}.name",
                                        f"names may hold letters, digits, '-', '_' and '.', got {name!r}"))
                continue
            tables = (where, values, settings, section.defaults, project_defaults)
            repeats = merged.pop(REPEATS, 1)
            if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= REPEATS_MAX:
                problems.append(Problem(path, _origin(REPEATS, *tables), "expected a whole number of trainings "
                                        f"from 1 to {REPEATS_MAX}, got {repeats!r} (run {name!r})"))
                invalid.add(name)
                continue
            try:
                model = _MODEL_ADAPTER.validate_python(merged)
            except ValidationError as exc:
                for p in _pydantic_problems(path, "", exc, tagged=True):
                    problems.append(Problem(path, _origin(p.key, *tables), f"{p.message} (run {name!r})"))
                invalid.add(name)
                continue
            if empty or dropped:
                invalid.add(name)
                continue
            experiments.append(Experiment(name=name, section=section.number or "", model=model, data=data,
                                          source=path, swept=tuple((k, v) for k, v in values.items()),
                                          repeats=repeats))
    return experiments


def _section_views(path: Path, section: SectionFile, kinds: dict[str, str], problems: list[Problem],
                   refused: set[str]) -> list[ViewSettings]:
    views = []
    for i, raw in enumerate(section.views):
        try:
            view: ViewSettings = view_adapter().validate_python(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, _index_loc("views", i), exc, tagged=True))
            continue
        found = view.section_problems(kinds, refused)
        problems.extend(Problem(path, f"views[{i}].{key}", message) for key, message in found)
        if not found:
            views.append(view)
    return views


def load_project(root: Path, profile: str = "full") -> Project:
    """Read, expand and validate every experiment file under root/experiments; raise SpecError
    listing every problem found."""
    root = root.resolve()
    exp_dir = root / EXPERIMENTS_DIR
    project_path = exp_dir / PROJECT_FILE
    problems: list[Problem] = []
    if exp_dir.is_symlink():
        raise SpecError([Problem(exp_dir, "", "is a link to another folder; a project's experiments must live in it")])
    if not project_path.is_file():
        raise SpecError([Problem(project_path, "", "not found: a project needs experiments/project.toml "
                                 "with at least `title = \"...\"` (is this the project folder?)")])
    raw_project = _read_toml(project_path, problems)
    project_file: ProjectFile | None = None
    if raw_project is not None:
        try:
            project_file = ProjectFile.model_validate(raw_project)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(project_path, "", exc))
    data = _data_spec(project_path, "data", project_file.data, problems) if project_file else "auto"
    project_defaults = project_file.defaults if project_file else {}
    _check_defaults(project_path, project_defaults, problems)
    sample: tuple[int, int] | None = None
    if profile == "quick" and project_file is not None:
        quick = project_file.quick
        data = (_data_spec(project_path, "quick.data", quick.data, problems) if quick.data is not None else
                "mnist-sample" if data in ("auto", "mnist") else data)
        if data != "mnist-sample" or quick.train or quick.validation:
            sample = (quick.train or QUICK_TRAIN, quick.validation or QUICK_VALIDATION)

    sections: list[Section] = []
    notes: list[str] = []  # what a build should say about how settings were applied
    shortened: list[str] = []  # runs the quick profile trains for fewer epochs than they declare
    used_project_defaults: set[str] = set()
    seen_names: dict[str, Path] = {}
    refused: set[str] = set()  # runs whose settings were refused, in any section
    seen_numbers: dict[str, Path] = {}
    for path in sorted(exp_dir.glob("*.toml")):
        if path.name == PROJECT_FILE:
            continue
        if not _inside(path, exp_dir):
            problems.append(Problem(path, "", f"a link to a file outside {exp_dir}; refused"))
            continue
        raw = _read_toml(path, problems)
        if raw is None:
            continue
        try:
            sf = SectionFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, "", exc))
            continue
        label = sf.number if sf.number is not None else path.stem
        if not SECTION_LABEL_RE.match(label):
            problems.append(Problem(path, "number", f"the file name {path.stem!r} is no section label: give "
                                    "`number` (letters, digits, spaces, '.', '-' or '_', up to 24)"))
        if label in seen_numbers:
            problems.append(Problem(path, "number",
                                    f"section {label} is also declared in {seen_numbers[label].name}"))
        seen_numbers[label] = path
        _check_defaults(path, sf.defaults, problems)
        taken: set[str] = set()
        sf = sf.model_copy(update={"number": label})
        experiments = _expand_runs(path, sf, project_defaults, data_label(data), problems, taken, refused, notes)
        used_project_defaults |= taken
        for key in sorted(k for k in sf.defaults if k not in taken and k in SETTINGS and sf.runs):
            kinds_here: list[str] = sorted({e.model.kind for e in experiments}) or ["none valid"]
            problems.append(Problem(path, f"defaults.{key}", f"applies to no run of this section (its runs are "
                                    f"of kind {kinds_here}); remove it or set it on the runs it is meant for"))
        local: dict[str, str] = {}
        for exp in experiments:
            if exp.name in seen_names:
                other = seen_names[exp.name]
                where = "this file" if other == path else other.name
                problems.append(Problem(path, "runs",
                                        f"run name {exp.name!r} is used twice (also in {where}); names must be unique"))
            seen_names[exp.name] = path
            local[exp.name] = exp.model.kind
        views = _section_views(path, sf, local, problems, refused)
        commentary = exp_dir / (sf.commentary or f"{path.stem}.md")
        if not _inside(commentary, exp_dir):  # a path outside, or a link to a file outside
            problems.append(Problem(path, "commentary", f"must name a file inside {exp_dir} (links that lead "
                                    f"outside are refused), got {sf.commentary or commentary.name!r}"))
        attach = None
        if sf.attach:
            attach = exp_dir / sf.attach
            if not _inside(attach, exp_dir):
                problems.append(Problem(path, "attach", f"must name a file inside {exp_dir}, got {sf.attach!r}"))
            elif not attach.is_file():
                problems.append(Problem(path, "attach", f"file not found: {attach}"))
        if profile == "quick" and project_file is not None:
            shortened.extend(e.name for e in experiments if e.model.epochs > project_file.quick.epochs)
            experiments = [_quick(e, project_file.quick.epochs) for e in experiments]
        order = ((sf.order,) if sf.order is not None else
                 tuple(float(p) for p in label.split(".")) if SECTION_NUMBER_RE.match(label) else (math.inf,))
        sections.append(Section(number=label, title=sf.title, order=order, source=path,
                                commentary=commentary, experiments=tuple(experiments),
                                views=tuple(views), attach=attach, attach_title=sf.attach_title,
                                question=sf.question,
                                details=sf.details or (project_file.details if project_file else "appendix")))
    if sections and not problems:
        for key in sorted(k for k in project_defaults if k not in used_project_defaults and k in SETTINGS):
            problems.append(Problem(project_path, f"defaults.{key}", "applies to no run of the project; remove it "
                                    "or set it where it is meant to apply"))
    kinds = {e.name: e.model.kind for s in sections for e in s.experiments}
    for section in sections:
        for i, view in enumerate(section.views):
            problems.extend(Problem(section.source, f"views[{i}].{key}", message)
                            for key, message in view.project_problems(kinds, refused))
    if problems:
        raise SpecError(problems)
    if not sections:
        raise SpecError([Problem(exp_dir, "",
                                 "no section files: add at least one experiments/*.toml besides project.toml")])
    assert project_file is not None
    sections.sort(key=lambda s: s.order)
    if shortened:
        notes.append(f"the quick profile trains {len(shortened)} run(s) for {project_file.quick.epochs} epoch(s) "
                     f"instead of their own ({', '.join(shortened[:3])}{', ...' if len(shortened) > 3 else ''}); "
                     "[quick] epochs in experiments/project.toml sets it")
    if profile == "quick" and sample is not None:
        notes.append(f"the quick profile uses a stratified sample of at most {sample[0]:,} training and "
                     f"{sample[1]:,} validation examples ([quick] train and validation)")
    return Project(root=root, title=project_file.title, author=project_file.author, data=data,
                   profile=profile, sections=tuple(sections), page_limit=project_file.page_limit, sample=sample,
                   percent_digits=project_file.percent_digits, notes=tuple(dict.fromkeys(notes)),
                   about=tuple((k, getattr(project_file, k)) for k in ("student_id", "course", "institution", "subject",
                                                                       "keywords", "language")))


def _data_spec(path: Path, key: str, value: Any, problems: list[Problem]) -> str | BaseModel:
    """`data` as written: a data set's name or a table with a `source` (project/sources.py)."""
    if isinstance(value, str) and value in NAMES:
        return value
    if isinstance(value, dict):
        try:
            parsed: BaseModel = SOURCE.validate_python(value)
            return parsed
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, key, exc, tagged=True))
            return "auto"
    problems.append(Problem(path, key, f"expected one of {list(NAMES)}, or a table with source = "
                                       f"{' or '.join(repr(s) for s in SOURCES)}, got {value!r}"))
    return "auto"


def data_problems(project: Project, kind: str, shape: tuple[int, ...]) -> list[Problem]:
    """Runs that cannot take the project's data: a cnn or a gan on feature vectors. `kind`:
    "images" or "features"; `shape`: one example's."""
    if kind == "images":
        return []
    problems = []
    for exp in project.experiments:
        if exp.model.kind in ("cnn", "gan"):
            what = "a cnn convolves images" if exp.model.kind == "cnn" else "a gan generates images"
            problems.append(Problem(exp.source, f"{exp.name}.kind",
                                    f"{what}, and the data ({exp.data}) are feature vectors of {shape[0]} values; "
                                    "expected kind = \"mlp\" (or a custom builder) for tabular data"))
    return problems


def with_precision(project: Project, precision: str) -> Project:
    """Every experiment in `precision` (a build's --precision): part of each configuration, so
    results in one precision never stand in for the other."""
    sections = tuple(replace(s, experiments=tuple(
        replace(e, model=e.model.model_copy(update={"precision": precision})) for e in s.experiments))
        for s in project.sections)
    return replace(project, sections=sections)


def with_repeats(project: Project, repeats: int) -> Project:
    """Every run trained `repeats` times (a build's --repeats), whatever its files say."""
    if not 1 <= repeats <= REPEATS_MAX:
        raise ReportgenError(f"--repeats {repeats}: expected a whole number of trainings from 1 to {REPEATS_MAX}")
    sections = tuple(replace(s, experiments=tuple(replace(e, repeats=repeats) for e in s.experiments))
                     for s in project.sections)
    return replace(project, sections=sections)


def _quick(exp: Experiment, epochs: int) -> Experiment:
    return replace(exp, model=exp.model.model_copy(update={"epochs": min(exp.model.epochs, epochs)}))


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def select(project: Project, only: Iterable[str]) -> list[Experiment]:
    """The experiments named by --only: section numbers, section file stems, run names or globs."""
    patterns = list(only)
    if not patterns:
        return project.experiments
    chosen: list[Experiment] = []
    for pattern in patterns:
        hits = [
            e for s in project.sections for e in s.experiments
            if pattern in (s.number, s.slug) or fnmatch.fnmatchcase(e.name, pattern)
        ]
        if not hits:
            choices = list(dict.fromkeys([s.number for s in project.sections] + [s.slug for s in project.sections]
                                         + [e.name for e in project.experiments]))
            # A mistyped option, not a problem in the experiment files.
            raise ReportgenError(f"--only {pattern!r} matches no section number, section file or run name "
                                 f"(or a glob of run names); expected one of {choices}")
        chosen.extend(h for h in hits if h not in chosen)
    return with_dependencies(project, chosen)


def dependencies(project: Project, exp: Experiment) -> list[str]:
    """Runs whose results this run's section needs besides its own (e.g. a mode-collapse view's
    classifier), as its views declare them."""
    for section in project.sections:
        if exp in section.experiments:
            return [name for v in section.views for name in v.dependencies(exp.name)]
    return []


def with_dependencies(project: Project, chosen: list[Experiment]) -> list[Experiment]:
    """The chosen runs plus what they depend on, dependencies first."""
    by_name = {e.name: e for e in project.experiments}
    out: list[Experiment] = []
    for exp in chosen:
        for name in dependencies(project, exp):
            if by_name[name] not in out:
                out.append(by_name[name])
        if exp not in out:
            out.append(exp)
    return out


def builder_path(builder: str, experiments_dir: Path) -> Path:
    """The file a `module:function` builder lives in: experiments/<module>.py."""
    return experiments_dir / f"{builder.split(':')[0]}.py"
