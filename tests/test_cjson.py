"""Numbers printed as OpenSIPS 3.6.8's bundled lib/cJSON.c ``print_number`` prints them.

The table was produced by compiling that function (with its ``myfloor``/``myfabs``: OpenSIPS
never defines HAVE_LIBMATH) on x86-64; :func:`test_matches_compiled_print_number` re-derives
it from the tarball when a C compiler is there. Rules, in order:

1. ``d == 0`` (``-0.0`` too) -> ``0``;
2. ``|valueint - d| <= DBL_EPSILON`` and d in C ``int`` range -> ``%d`` (tiny fractions -> ``0``);
3. NaN/inf -> ``null``;
4. ``|myfloor(d) - d| <= DBL_EPSILON`` and ``|d| < 1e60`` -> ``%.0f``; ``myfloor`` casts to
   ``long``: >= 2^63 (or < -2^63) gives LONG_MIN, and for negatives ``d - 0.9999999999999999``
   rounds to ``d - 1`` while |d| < 2^53, so those integral values are *not* integral here;
5. ``|d| < 1e-6`` or ``|d| > 1e9`` -> ``%e``; else ``%f``.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from event_kafka.cjson import compact_json, loads_json
from tests.support import missing

TABLE = [
    # rule 1, 2
    ("0", "0"),
    ("-0.0", "0"),
    ("5e-17", "0"),
    ("-1e-17", "0"),
    ("1.0000000000000002", "1"),
    ("2147483647", "2147483647"),
    ("-2147483648", "-2147483648"),
    # rule 3
    ("1e400", "null"),
    ("-1e400", "null"),
    # rule 4 / 5 around C long range: positives print every digit below 2^63 only
    ("2147483648", "2147483648"),
    ("1e9", "1000000000"),
    ("9007199254740993", "9007199254740992"),
    ("9223372036854774784", "9223372036854774784"),  # largest double below 2^63
    ("9223372036854775807", "9.223372e+18"),  # rounds to 2^63
    ("9223372036854775808", "9.223372e+18"),
    ("1e19", "1.000000e+19"),
    ("1e30", "1.000000e+30"),
    ("1e60", "1.000000e+60"),
    ("9.999999999e59", "1.000000e+60"),
    # negatives: integral outside int range print %e unless in [-2^63, -2^53]
    ("-2147483649", "-2.147484e+09"),
    ("-3e9", "-3.000000e+09"),
    ("-4503599627370497", "-4.503600e+15"),
    ("-9007199254740991", "-9.007199e+15"),
    ("-9007199254740992", "-9007199254740992"),
    ("-1e18", "-1000000000000000000"),
    ("-9223372036854775808", "-9223372036854775808"),
    ("-9223372036854777856", "-9.223372e+18"),  # next double below -2^63
    ("-1e19", "-1.000000e+19"),
    # fractions
    ("0.5", "0.500000"),
    ("-2.5", "-2.500000"),
    ("1e-7", "1.000000e-07"),
    ("-1e-7", "-1.000000e-07"),
    ("0.000001", "0.000001"),
    ("999999999.5", "999999999.500000"),
    ("1000000001.5", "1.000000e+09"),
    ("12345.678901234", "12345.678901"),
]


@pytest.mark.parametrize(("text", "printed"), TABLE)
def test_print_number_table(text: str, printed: str) -> None:
    assert compact_json(loads_json(text)) == printed
    # Nested as in MI raise_event params (the only place OpenSIPS prints doubles).
    assert compact_json(loads_json(f'{{"a":[{text}]}}')) == f'{{"a":[{printed}]}}'


def _tarball() -> Path | None:
    for root in Path(__file__).resolve().parents:
        t = root / "shared/vendor/opensips/opensips-3.6.8.tar.gz"
        if t.is_file():
            return t
    return None


_HARNESS_HEAD = """#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <limits.h>
typedef struct cJSON { int valueint; double valuedouble; } cJSON;
typedef struct printbuffer { int unused; } printbuffer;
static unsigned char *ensure(printbuffer *p, size_t n) { (void)p; return malloc(n); }
#define cJSON_malloc malloc
"""
_HARNESS_MAIN = """
int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        cJSON c; double d = strtod(line, NULL);
        c.valuedouble = d;  /* parse_number's saturation */
        c.valueint = d >= INT_MAX ? INT_MAX : d <= INT_MIN ? INT_MIN : (int)d;
        unsigned char *s = print_number(&c, NULL);
        printf("%s\\n", s); free(s);
    }
    return 0;
}
"""


def test_matches_compiled_print_number(tmp_path: Path) -> None:
    """Differential: OpenSIPS's own print_number, compiled from the tarball, vs ours."""
    tarball, cc = _tarball(), shutil.which("cc") or shutil.which("gcc")
    if tarball is None or cc is None:
        missing("needs the OpenSIPS tarball (../shared/vendor) and a C compiler")
    with tarfile.open(tarball) as tf:
        member = tf.extractfile("opensips-3.6.8/lib/cJSON.c")
        assert member is not None
        src = member.read().decode()

    def grab(start: str, stop: str) -> str:
        i = src.index(start)
        return src[i : src.index(stop, i)]

    c_src = (
        _HARNESS_HEAD
        + grab("double myfabs", "#endif")
        + "#define FABS myfabs\n"
        + grab("double myfloor", "#endif")
        + "#define FLOOR myfloor\n"
        + grab("static unsigned char *print_number(", "/* parse 4 digit hexadecimal")
        + _HARNESS_MAIN
    )
    (tmp_path / "pn.c").write_text(c_src)
    subprocess.run([cc, "-O0", "-o", str(tmp_path / "pn"), str(tmp_path / "pn.c")], check=True)
    r = random.Random(15)
    values = [float(t) for t, _ in TABLE]
    for _ in range(20000):
        k = r.random()
        if k < 0.3:  # any bit pattern
            values.append(struct.unpack("<d", r.getrandbits(64).to_bytes(8, "little"))[0])
        elif k < 0.6:  # integers of every size
            values.append(float(r.choice((-1, 1)) * r.getrandbits(r.randint(1, 70))))
        elif k < 0.8:
            values.append(r.uniform(-1, 1) * 10.0 ** r.randint(-20, 70))
        else:  # around powers of two (2^31, 2^53, 2^63 edges)
            values.append(
                r.choice((-1, 1)) * 2.0 ** r.randint(0, 80) + r.choice((0, 1, -1, 0.5, 2048))
            )
    out = subprocess.run(
        [str(tmp_path / "pn")],
        input="".join(f"{v!r}\n" for v in values),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert len(out) == len(values)
    bad = [
        (v, c, compact_json(v)) for v, c in zip(values, out, strict=True) if compact_json(v) != c
    ]
    assert not bad, bad[:10]
