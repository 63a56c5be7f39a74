"""Requires-Python from the upstream or an sdist, fuzzed: a mask (0 when invalid) that fits
PostgreSQL's bigint, never an exception escaping, and never a Python excluded that some
patch release of it satisfies."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from piwheels_build.requirespython import admits, excluded_mask, is_valid

FUZZ = settings(max_examples=150, deadline=None)

_OPS = st.sampled_from(["==", "!=", "<=", ">=", "<", ">", "~=", "===", "", "=>", "=="])
_VERSIONS = st.one_of(
    st.builds(lambda a, b, c, w: f"{a}.{b}" + (f".{c}" if c is not None else "")
              + (".*" if w else ""),
              st.integers(0, 4), st.integers(0, 70), st.one_of(st.none(), st.integers(0, 30)),
              st.booleans()),
    st.text(max_size=10),
)
clauses = st.builds(lambda op, v: f"{op}{v}", _OPS, _VERSIONS)
specs = st.one_of(st.lists(clauses, max_size=4).map(",".join),
                  st.text(max_size=40), st.sampled_from(["\0", "\udcff", ">=3.8\n", " " * 5]))


@FUZZ
@given(specs)
@example(">=3.6.*")
@example("~=3")
@example("===")
@example("!=3.8.*,<3.8.5")
def test_any_requires_python_gives_a_mask_that_fits_a_bigint(spec):
    mask = excluded_mask(spec)
    assert 0 <= mask < 2 ** 63
    if not is_valid(spec):
        assert mask == 0 and admits(spec, (3, 8, 0))


@FUZZ
@given(specs, st.integers(0, 62), st.integers(0, 40))
@example(">=3.8.5", 8, 10)
@example(">3.8.0,<3.8.3,!=3.8.1", 8, 2)
@example("~=3.10.4", 10, 7)
@example("===3.9.17", 9, 17)
def test_a_minor_is_excluded_only_when_no_patch_release_satisfies(spec, minor, patch):
    try:
        parsed = SpecifierSet(spec) if spec.strip() else None
    except InvalidSpecifier:
        parsed = None
    if parsed is not None and parsed.contains(f"3.{minor}.{patch}", prereleases=True):
        assert not excluded_mask(spec) >> minor & 1, (spec, minor, patch)
