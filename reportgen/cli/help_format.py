"""How reportgen's help reads: flags without a `<bool>` placeholder, arguments in the usage line as
their metavars (`compare A B`), and docstrings as flowing paragraphs whatever their source wrapping.

Typer's help panel prints every option's type, `<bool>` included, even for flags such as --help that
take no value; and it writes required arguments as `{a}` and keeps the line breaks of a docstring's
source in the command list. The command and group classes here correct that at the one place each
is decided, so every command gets it without repeating it in its declarations.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def flowing(text: str | None) -> str | None:
    """A help text as paragraphs of flowing text: the single line breaks of its source become spaces,
    paragraphs (separated by a blank line) stay apart."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def _without_flag_placeholders(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # shown in place of the type; a flag takes no value
    return params


class Command(TyperCommand):
    """A reportgen command: see the module's docstring."""

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        kwargs["help"] = flowing(kwargs.get("help"))
        super().__init__(name, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_placeholders(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.metavar and param.required and param.nargs == 1:
                pieces.append(param.metavar)  # `compare A B`, not `compare {A} {B}`
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(TyperGroup):
    """reportgen itself, the group of the commands: flags without `<bool>`, help text flowing."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["help"] = flowing(kwargs.get("help"))
        super().__init__(**kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_placeholders(super().get_params(ctx))
