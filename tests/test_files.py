"""Atomic file writes: the previous file survives a failed write, nothing is left behind."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from calcinet.files import atomic_replace, atomic_write, temporary_beside


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that changes it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_atomic_write_replaces_the_content(tmp_path: Path) -> None:
    target = tmp_path / "model.ts"
    target.write_bytes(b"previous")
    with atomic_write(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".model.ts.")
        temporary.write_bytes(b"new")
        assert target.read_bytes() == b"previous"  # untouched until the block ends
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["model.ts"]


def test_atomic_write_creates_a_new_file(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "cache.json") as temporary:
        temporary.write_text("{}")
    assert (tmp_path / "cache.json").read_text() == "{}"
    assert _names(tmp_path) == ["cache.json"]


def test_an_exception_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    previous = os.urandom(4096)
    target.write_bytes(previous)
    with pytest.raises(RuntimeError, match="killed"), atomic_write(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == previous
    assert _names(tmp_path) == ["last.ckpt"]

    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "new.ckpt") as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert _names(tmp_path) == ["last.ckpt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    os.umask(mask)
    target = tmp_path / "model.pt2"
    target.write_bytes(b"previous")
    os.chmod(target, 0o600)
    with atomic_write(target, ".pt2") as temporary:
        assert stat.S_IMODE(temporary.stat().st_mode) == mode
        temporary.write_bytes(b"new")
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_a_missing_folder_raises_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    message = re.escape(f"cannot write model.ts: no such folder: '{folder}'")
    with (
        pytest.raises(FileNotFoundError, match=message) as raised,
        atomic_write(folder / "model.ts"),
    ):
        pytest.fail("the block must not run")
    assert raised.value.errno == errno.ENOENT
    assert _names(tmp_path) == []


def test_temporary_beside_is_removed_unless_moved(tmp_path: Path) -> None:
    target = tmp_path / "model.pt2"
    with temporary_beside(target, ".pt2") as first, temporary_beside(target, ".pt2") as second:
        assert first != second and first.exists() and second.exists()
        assert first.name.startswith(".model.pt2.") and first.name.endswith(".pt2")
        first.write_bytes(b"kept")
        os.replace(first, target)
    assert _names(tmp_path) == ["model.pt2"] and target.read_bytes() == b"kept"
    with temporary_beside(target) as temporary:
        assert temporary.name.endswith(".tmp")
    assert _names(tmp_path) == ["model.pt2"]


def test_a_folder_that_refuses_fsync_is_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_write(tmp_path / "a.json") as temporary:
        temporary.write_text("1")
    assert (tmp_path / "a.json").read_text() == "1"


def test_a_failed_data_fsync_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    target = tmp_path / "a.json"
    target.write_text("previous")
    temporary = tmp_path / ".a.json.tmp"
    temporary.write_text("new")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_replace(temporary, target)
    assert target.read_text() == "previous"
