"""The command line: commands that parse, call the pipeline and print."""

from reportgen.cli.main import app

__all__ = ["app"]
