"""``malloc.return_large_blocks``: the C library takes the fixed mmap threshold where it has glibc's mallopt."""

from __future__ import annotations

import ctypes
import platform

import pytest

from thred_bridge import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's M_MMAP_THRESHOLD is glibc's")
def test_glibc_takes_the_threshold() -> None:
    assert malloc.return_large_blocks()
    assert malloc.return_large_blocks(256 * 1024)
    assert malloc.return_large_blocks()  # back to the product's threshold


def test_without_mallopt_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(_name: object) -> object:
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert not malloc.return_large_blocks()
