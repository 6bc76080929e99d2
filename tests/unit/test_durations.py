"""machinery.durations: Go-style durations for every component's flags and kctl's."""
import argparse

import pytest

from machinery import durations


@pytest.mark.parametrize("text,seconds", [
    ("1h0m0s", 3600), ("1h", 3600), ("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400),
    ("2", 2), ("0", 0), ("0.25", 0.25), ("100us", 1e-4), ("3ns", 3e-9), (" 4s ", 4), ("8760h", 8760 * 3600),
])
def test_go_durations_and_bare_seconds(text, seconds):
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "1d", "5 s", "h", "1h-5m", "-1s", "1.2.3s", "s5"])
def test_what_is_not_a_duration_is_refused_by_name(text):
    with pytest.raises(ValueError, match="invalid duration"):
        durations.parse(text)
    with pytest.raises(argparse.ArgumentTypeError, match=f"invalid duration {text!r}"):
        durations.duration(text)


def test_an_argparse_flag_names_itself_and_the_reason(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--event-ttl", type=durations.duration)
    assert p.parse_args(["--event-ttl", "1h0m0s"]).event_ttl == 3600
    with pytest.raises(SystemExit):
        p.parse_args(["--event-ttl", "a while"])
    assert "argument --event-ttl: invalid duration 'a while'" in capsys.readouterr().err
