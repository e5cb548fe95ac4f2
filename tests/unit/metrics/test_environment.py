"""The environment stamp: the C library. (The harness's commit and dirty flag, which need a
real git: tests/integration/test_environment.py.)"""

from __future__ import annotations

import pytest

from bench.metrics import environment


@pytest.mark.parametrize(
    ("reported", "stamped"), [(("glibc", "2.36"), "glibc 2.36"), (("", ""), "unknown")]
)
def test_the_c_library_is_stamped(
    monkeypatch: pytest.MonkeyPatch, reported: tuple[str, str], stamped: str
) -> None:
    monkeypatch.setattr(environment.platform, "libc_ver", lambda: reported)
    assert environment.libc_version() == stamped
