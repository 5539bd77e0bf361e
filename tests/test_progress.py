"""Progress bars draw on a terminal only, and ``enabled=False`` turns them off everywhere."""

import sys

import pytest

from cellcompare.progress import progress_bar


def test_bar_is_off_and_silent_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()  # pytest's capture stands in for a log file
    bar = progress_bar(range(5), desc="sites")
    assert bar.disable
    assert list(bar) == [0, 1, 2, 3, 4]
    bar.close()
    assert capsys.readouterr().err == ""


def test_bar_is_on_when_stderr_is_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_bar(range(5), desc="sites")
    assert not bar.disable
    list(bar)
    bar.close()
    assert "sites" in capsys.readouterr().err  # guards the test below: a terminal does get a bar


def test_enabled_false_turns_the_bar_off_even_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_bar(range(5), desc="sites", enabled=False)
    assert bar.disable
    assert list(bar) == [0, 1, 2, 3, 4]
    bar.close()
    assert capsys.readouterr().err == ""


def test_manual_bar_with_total(capsys):
    bar = progress_bar(total=3, desc="features")
    bar.update(3)
    bar.close()
    assert bar.disable and capsys.readouterr().err == ""


def test_disable_cannot_be_passed():
    with pytest.raises(TypeError, match="enabled=False"):
        progress_bar(range(3), disable=False)
