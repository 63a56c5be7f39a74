"""requirespython: which Python 3 minors a Requires-Python rules out (pure, no database)."""

import pytest

from piwheels_build.requirespython import admits, excluded_mask, excludes, is_valid


def minors(mask: int) -> list[int]:
    return [n for n in range(63) if mask >> n & 1]


@pytest.mark.parametrize(("spec", "excluded"), [
    (None, []),
    ("", []),
    ("  ", []),
    (">=3.9", list(range(9))),
    (">= 3.9", list(range(9))),
    (">=3.8.1", list(range(8))),          # some 3.8.x satisfies it: 3.8 stays
    (">3.8", list(range(8))),             # 3.8.1 > 3.8
    (">=3.7,<3.10", list(range(7)) + list(range(10, 63))),
    ("<3.10,>=3.7", list(range(7)) + list(range(10, 63))),
    ("!=3.0.*,!=3.1.*,!=3.2.*,>=2.7", [0, 1, 2]),
    ("==3.10.*", [n for n in range(63) if n != 10]),
    ("~=3.8.1", [n for n in range(63) if n != 8]),
    ("===3.8.10", [n for n in range(63) if n != 8]),
    (">=3.10,<4", list(range(10))),
    (">=2.7", []),
    ("<3", list(range(63))),
])
def test_excluded_minors(spec, excluded):
    assert minors(excluded_mask(spec)) == excluded


@pytest.mark.parametrize("spec", [">=3.6.*", "python3", ">=3.8;", "=>3.8"])
def test_an_invalid_specifier_excludes_nothing(spec):
    assert not is_valid(spec)
    assert excluded_mask(spec) == 0
    assert admits(spec, (3, 8, 10))


def test_the_mask_fits_a_postgresql_bigint():
    assert excluded_mask("<3") < 2 ** 63


def test_excludes_reads_the_mask_like_the_sql():
    mask = excluded_mask(">=3.9")
    assert excludes(mask, 3, 8) and not excludes(mask, 3, 9)
    assert not excludes(mask, 2, 7)          # only 3.x is held
    assert not excludes(mask, 3, 63)
    assert not excludes(None, 3, 8) and not excludes(0, 3, 8)


def test_admits_checks_the_exact_interpreter_version_as_pip_does():
    assert not admits(">=3.8.1", (3, 8, 0))
    assert admits(">=3.8.1", (3, 8, 10))
    assert not admits(">=3.9", (3, 8, 20))
    assert admits(None, (3, 8, 0)) and admits("", (3, 8, 0))


def test_an_ansible_wave_does_not_report_not_for_python_as_a_failed_build():
    from piwheels_build.admin.waves import failed_builds

    rows = [{"status": "success"}, {"status": "not-for-python"}, {"status": "failed"},
            {"status": "missing-build-dependency"}]
    assert failed_builds(rows) == [{"status": "failed"}, {"status": "missing-build-dependency"}]
