"""Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`).

Modelled on k8s.io/apimachinery/pkg/api/resource.Quantity, computed with
exact `fractions.Fraction` arithmetic instead of inf.Dec:

* A quantity is `<signed decimal number><suffix>`; the suffix decides the
  *format family*: binary SI (`Ki Mi Gi Ti Pi Ei`), decimal SI (`n u m "" k
  M G T P E`) or decimal exponent (`e3`, `E-2`).
* Parsing rounds a non-zero value away from zero to the nearest nano (1n),
  as Kubernetes does ("if you want some resources, you get some").
* The canonical form keeps the family: decimal values are written as the
  largest power-of-1000 suffix that keeps the mantissa an integer (`0.5` ->
  `500m`, `1000m` -> `1`, `1000` -> `1k`, `1.5` -> `1500m`); binary values
  as the largest power of 1024 (`1024Mi` -> `1Gi`), except that binary
  values below 1024 in magnitude, or not whole numbers, fall back to
  decimal SI so nothing is lost (`0.5Ki` -> `512`, `0.1Gi` ->
  `107374182400m`).
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

from machinery.errors import DecodeError

FORMAT_MESSAGE = ("quantities must match the regular expression "
                  "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
NUMERIC_MESSAGE = "unable to parse numeric part of quantity"
SUFFIX_MESSAGE = "unable to parse quantity's suffix"

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_SHAPE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}      # power of 2
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}                                                          # power of 10
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v // 10: k for k, v in _BINARY.items()}
_NANO = Fraction(1, 10**9)


class QuantityError(DecodeError):
    """Raised for a string that is not a quantity; the message is Kubernetes'."""


def _split(s: str) -> tuple[Fraction, str]:
    """Parse into (exact value, format family), before nano rounding."""
    if not isinstance(s, str):
        raise QuantityError(FORMAT_MESSAGE)
    m = _SHAPE.fullmatch(s)
    if m is None:
        raise QuantityError(FORMAT_MESSAGE)
    number, suffix = m.groups()
    digits = number.lstrip("+-")
    if digits.count(".") > 1 or digits.strip(".") == "":
        raise QuantityError(NUMERIC_MESSAGE)
    value = Fraction(number)
    if suffix in _BINARY:
        return value * (2 ** _BINARY[suffix]), BINARY_SI
    if suffix in _DECIMAL:
        return value * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI
    em = re.fullmatch(r"[eE]([+-]?[0-9]+)", suffix)
    if em is None:
        raise QuantityError(SUFFIX_MESSAGE)
    return value * Fraction(10) ** int(em.group(1)), DECIMAL_EXPONENT


def _round_nano(value: Fraction) -> Fraction:
    """Round away from zero to a whole number of nanos."""
    n = value / _NANO
    if n.denominator == 1:
        return value
    whole = math.ceil(abs(n))
    return Fraction(whole if value > 0 else -whole) * _NANO


def parse_with_format(s: str) -> tuple[Fraction, str]:
    """(value, format family); raises QuantityError with Kubernetes' message."""
    value, fmt = _split(s)
    if fmt == BINARY_SI and 0 < abs(value) < 1:
        fmt = DECIMAL_SI
    return _round_nano(value), fmt


def parse(s: str) -> Fraction:
    """The exact value of a quantity string (`"100m"` -> Fraction(1, 10))."""
    return parse_with_format(s)[0]


def is_valid(s: str) -> bool:
    try:
        parse(s)
    except QuantityError:
        return False
    return True


def _decimal_parts(value: Fraction) -> tuple[int, int]:
    """mantissa, exponent (a multiple of 3) with value == mantissa * 10**exponent."""
    mantissa, exponent = int(value / _NANO), -9     # value is a whole number of nanos
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    while exponent % 3:
        mantissa *= 10
        exponent -= 1
    return mantissa, exponent


def format_value(value: Fraction, fmt: str) -> str:
    """Render a value in the canonical form of the given format family."""
    value = _round_nano(Fraction(value))
    if value == 0:
        return "0"
    if fmt == BINARY_SI:
        if abs(value) < 1024 or value.denominator != 1:
            fmt = DECIMAL_SI
        else:
            mantissa, power = int(value), 0
            while mantissa % 1024 == 0 and power < 6:
                mantissa //= 1024
                power += 1
            return f"{mantissa}{_BINARY_SUFFIX.get(power, '')}"
    mantissa, exponent = _decimal_parts(value)
    if fmt == DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    if exponent == 0:
        return str(mantissa)
    return f"{mantissa}e{exponent}"


def canonical(s: str) -> str:
    """Kubernetes' canonical spelling: `0.5` -> `500m`, `1024Mi` -> `1Gi`."""
    value, fmt = parse_with_format(s)
    return format_value(value, fmt)


def milli_value(s: str) -> int:
    """ceil(value * 1000), like Quantity.MilliValue (`"0.5"` -> 500)."""
    return math.ceil(parse(s) * 1000)


def value(s: str) -> int:
    """ceil(value), like Quantity.Value (`"100m"` -> 1, `"1Ki"` -> 1024)."""
    return math.ceil(parse(s))


def is_negative(s: str) -> bool:
    return parse(s) < 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as a <, ==, > b."""
    x, y = parse(a), parse(b)
    return (x > y) - (x < y)
