"""`reportgen preview` without a browser: what the served page says, and a port in use. The live page in a
real browser is tested end to end (tests/test_end_to_end.py)."""

from __future__ import annotations

import socket

import pytest

from reportgen.errors import ReportgenError
from reportgen.preview import Preview, bind
from reportgen.project.settings import Options

SECTION = """
number = "1"
title = "Widths"
[[runs]]
name = "net"
kind = "mlp"
hidden_layers = [8]
"""


def test_runs_without_a_result_are_named_with_the_command_that_trains_them(make_project, tmp_path):
    root = make_project({"experiments/project.toml": 'title = "P"\ndata = "mnist-sample"\n',
                         "experiments/1.toml": SECTION, "experiments/1.md": "Text.\n"})
    live = Preview(Options(root=root, profile="quick", cache_dir=tmp_path / "cache"), say=lambda _m: None)
    live.rebuild()
    assert live.error is None and live.stale == ["net"] and live.version == 1
    page = live.decorate((root / "build" / "report.html").read_text())
    assert "1 run(s) have no result for their current settings: net" in page
    assert "reportgen build --quick" in page and "EventSource" in page
    assert page.index("Live preview") < page.index("Widths")
    assert "EventSource" not in (root / "build" / "report.html").read_text()  # added as served, not written

    (root / "experiments" / "1.toml").write_text(SECTION.replace("[8]", '"eight"'))
    live.rebuild()
    assert live.version == 2 and "1.toml" in live.error and "hidden_layers" in live.error
    assert "Widths" in (root / "build" / "report.html").read_text()  # the last good report is kept
    assert "could not be built" in live.decorate("<html><body>x</body></html>")


def test_a_port_in_use_is_a_clear_error_and_port_0_finds_a_free_one():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(ReportgenError, match=rf"port {taken.getsockname()[1]} on 127.0.0.1 is in use"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    free = bind("127.0.0.1", 0)
    assert free.getsockname()[1] > 0
    free.close()
