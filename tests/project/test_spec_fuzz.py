"""Broken experiment files, generated from the shipped valid ones: each key deleted, duplicated,
retyped and misspelled, lines cut short, files truncated. Every broken variant must be rejected
before training with file, key (or line) and what was expected; none may raise anything else.

The figures (variants tried, rejected, still valid, tracebacks) are printed at the end of the run."""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reportgen.errors import SpecError
from reportgen.project.spec import load_project
from tests.conftest import REPO, build_or_fail, write_project

FIGURES: dict[str, int] = {}  # read by conftest.pytest_terminal_summary
KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w-]*)(\s*=\s*)(.+)$")
# Every message says what was wrong against what was expected, in one of these ways.
SAYS_WHAT_WAS_EXPECTED = re.compile(r"expected|should|missing|unknown|invalid TOML|must|needs? |names no|"
                                    r"used twice|also declared|set both|expands to nothing|applies to no|not found|"
                                    r"names may hold", re.IGNORECASE)
RETYPED = ('"text"', "42", "[1, 2]", "true", "{ a = 1 }", "-1", "1e999", '""')


def variants(text: str, seed: int) -> Iterator[tuple[str, str, str]]:
    """(mutation, key, mutated text) for every key line of a TOML file, plus random truncations."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        indent, key, eq, value = match.groups()

        def swap(new: str, i: int = i) -> str:
            return "\n".join([*lines[:i], new, *lines[i + 1:]]) + "\n"

        yield "delete", key, "\n".join([*lines[:i], *lines[i + 1:]]) + "\n"
        yield "duplicate", key, swap(f"{line}\n{line}")
        for new in RETYPED:
            if new != value.strip():
                yield "retype", key, swap(f"{indent}{key}{eq}{new}")
        yield "misspell", key, swap(f"{indent}{key}{key[-1]}{eq}{value}")
        yield "misspell", key, swap(f"{indent}{key[1:]}{eq}{value}")
        yield "cut line", key, swap(line[:-1])
        yield "unclosed quote", key, swap(f'{indent}{key}{eq}"{value}')
    rng = random.Random(seed)
    for _ in range(6):
        yield "truncate", "", text[:rng.randrange(len(text))]


def tally(name: str, amount: int = 1) -> None:
    FIGURES[name] = FIGURES.get(name, 0) + amount


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.toml")))
def test_every_broken_variant_is_rejected_with_file_key_and_what_was_expected(name: str, tmp_path: Path) -> None:
    original = (REPO / "experiments" / name).read_text()
    root = tmp_path / "project"
    shutil.copytree(REPO / "experiments", root / "experiments")
    target = root / "experiments" / name
    tally("tracebacks", 0)
    for mutation, key, text in variants(original, seed=len(name)):
        target.write_text(text)
        tally("variants tried")
        try:
            load_project(root)
        except SpecError as exc:
            tally("rejected")
            for problem in exc.problems:
                assert Path(problem.file).parent == root / "experiments", (mutation, key, str(problem))
                assert problem.key or problem.line, (mutation, key, str(problem))  # where exactly
                assert SAYS_WHAT_WAS_EXPECTED.search(problem.message), (mutation, key, str(problem))
            if key and mutation != "truncate":
                assert any(Path(p.file).name == name for p in exc.problems) or "compare" in str(exc), \
                    (mutation, key, str(exc))
            continue
        except Exception as exc:  # the one outcome that must never happen
            tally("tracebacks")
            raise AssertionError(f"{mutation} of {key!r} in {name} raised {type(exc).__name__}: {exc}") from exc
        # Still valid: deleting an optional key, or a new value of the right type.
        tally("still valid (an optional key deleted or a value of the right type)")
        assert mutation in ("delete", "retype", "cut line", "truncate"), (mutation, key)


@pytest.mark.slow
def test_a_broken_file_stops_the_build_before_training_and_keeps_the_cache(tmp_path: Path, runner) -> None:
    from reportgen.cli import app

    section = 'number = "1"\ntitle = "t"\n[defaults]\nkind = "mlp"\n[[runs]]\nname = "a"\nhidden_layers = [8]\n'
    root = write_project(tmp_path / "project", {"experiments/1-a.toml": section, "experiments/1-a.md": "x\n"})
    build_or_fail(root, ["--limit-train", "200", "--limit-val", "50"])
    cached = sorted(p.name for p in (root / ".reportgen-cache" / "results").iterdir())
    broken = list(variants(section, seed=1))
    for mutation, key, text in broken:
        (root / "experiments" / "1-a.toml").write_text(text)
        result = runner.invoke(app, ["build", "-C", str(root), "--limit-train", "200", "--limit-val", "50"])
        if result.exit_code == 0:
            continue  # a valid variant (its own result is trained; the first stays cached)
        assert result.exit_code == 1, (mutation, key, result.output)
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit | None)
        assert "Nothing was trained" in result.output and "1-a.toml" in result.output, (mutation, key)
        assert set(cached) <= {p.name for p in (root / ".reportgen-cache" / "results").iterdir()}
        tally("broken files given to `reportgen build`")
