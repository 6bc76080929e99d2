"""Quantities parse, canonicalise and convert like resource.Quantity."""
from fractions import Fraction

import pytest

from machinery import quantity

FORMAT = ("quantities must match the regular expression "
          "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


@pytest.mark.parametrize("text, value", [
    ("100m", Fraction(1, 10)),
    ("0.5", Fraction(1, 2)),
    ("1", Fraction(1)),
    ("128Mi", Fraction(128 * 2**20)),
    ("1G", Fraction(10**9)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("1.5Gi", Fraction(3 * 2**29)),
    ("1E", Fraction(10**18)),          # E alone is exa, not an exponent
    ("+2k", Fraction(2000)),
    ("-1", Fraction(-1)),
    ("12e-1", Fraction(6, 5)),
    ("1n", Fraction(1, 10**9)),
    ("0.1n", Fraction(1, 10**9)),      # rounded up to the smallest unit
    ("1.", Fraction(1)),
    (".5", Fraction(1, 2)),
])
def test_parse(text, value):
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text, message", [
    ("junk", FORMAT),
    ("1Gb", FORMAT),
    ("", FORMAT),
    (" 1", FORMAT),
    ("1 ", FORMAT),
    ("Mi", FORMAT),
    ("1K", "unable to parse quantity's suffix"),
    ("1e", "unable to parse quantity's suffix"),
    ("1mi", "unable to parse quantity's suffix"),
    ("1.2.3", "unable to parse numeric part of quantity"),
    (".", "unable to parse numeric part of quantity"),
])
def test_parse_rejects(text, message):
    with pytest.raises(quantity.QuantityError) as exc:
        quantity.parse(text)
    assert str(exc.value) == message
    assert not quantity.is_valid(text)


@pytest.mark.parametrize("text, canonical", [
    ("0.5", "500m"),
    ("1000m", "1"),
    ("100m", "100m"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    ("1000", "1k"),
    ("1.5", "1500m"),
    ("1.5Gi", "1536Mi"),
    ("0.1Gi", "107374182400m"),        # not a whole number of bytes: decimal SI
    ("0.5Ki", "512"),                  # binary below 1024: decimal SI
    ("1Ki", "1Ki"),
    ("128Mi", "128Mi"),
    ("1e3", "1e3"),                    # decimal-exponent family is kept
    ("1.5e3", "1500"),
    ("12e-1", "1200e-3"),
    ("0", "0"),
    ("0Mi", "0"),
    ("0.0001", "100u"),
    ("-1500m", "-1500m"),
    ("-0.5", "-500m"),
    ("1n", "1n"),
    ("2G", "2G"),
    ("64Mi", "64Mi"),
    ("250m", "250m"),
])
def test_canonical(text, canonical):
    assert quantity.canonical(text) == canonical
    # canonical form is a fixed point and keeps the value
    assert quantity.canonical(canonical) == canonical
    assert quantity.parse(canonical) == quantity.parse(text)


@pytest.mark.parametrize("text, milli, whole", [
    ("100m", 100, 1),
    ("0.5", 500, 1),
    ("2", 2000, 2),
    ("1Ki", 1024000, 1024),
    ("1n", 1, 1),
    ("1500m", 1500, 2),
    ("0", 0, 0),
    ("-1500m", -1500, -1),
])
def test_milli_value_and_value_round_up(text, milli, whole):
    assert quantity.milli_value(text) == milli
    assert quantity.value(text) == whole


def test_is_negative_and_compare():
    assert quantity.is_negative("-1m")
    assert not quantity.is_negative("0")
    assert quantity.compare("500m", "0.5") == 0
    assert quantity.compare("1Gi", "1G") == 1
    assert quantity.compare("100m", "1") == -1
