"""Atomic file writes: a file someone keeps is either its previous version or the complete new one;
and a file's SHA-256, the identity checkpoints and exported models are recorded by.

Checkpoints, exported models and caches are written to a temporary file in the same folder (so the
same file system) and then renamed onto their name with :func:`os.replace`, which is atomic. A
process killed while writing (SIGKILL, out of memory, a pre-empted node, a full disk) therefore
never leaves a half-written checkpoint or model that a later resume or load would fail on: the
previous file survives, and at most a hidden temporary file is left beside it. The data is
flushed to disk before the rename and the folder after it, so a power loss does not leave the new
name pointing at missing data either.

Standard library only: the torch-only inference code may import it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Longest part of the target's name kept in a temporary file's name (file names are <= 255 bytes).
_MAX_NAME = 200


@contextmanager
def temporary_beside(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A fresh empty file ``.<name>.<random><suffix>`` in ``path``'s folder; removed on exit
    unless it was moved away.

    ``suffix`` defaults to ``.tmp``; give the target's suffix where the writer insists on one
    (``torch.export.save`` expects ``.pt2``). The file gets the permissions a plain ``open`` would
    give (``0o666`` less the umask), not the private ``0o600`` of :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temporary = path.with_name(
            f".{path.name[:_MAX_NAME]}.{secrets.token_hex(4)}{suffix or '.tmp'}"
        )
        try:
            handle = os.open(temporary, flags, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not path.parent.is_dir():
                raise FileNotFoundError(
                    errno.ENOENT, f"cannot write {path.name}: no such folder", str(path.parent)
                ) from None
            raise
        break
    os.close(handle)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; best effort, some file systems refuse."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_replace(temporary: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the fully written file ``temporary`` onto ``final`` (same folder) in one step.

    The data is flushed to disk first and the folder after the rename.
    """
    with open(temporary, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(temporary, final)
    _fsync_folder(Path(final).parent)


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on normal exit it replaces ``path``.

    On an exception ``path`` is left as it was and the temporary file is removed.
    """
    path = Path(path)
    with temporary_beside(path, suffix) as temporary:
        yield temporary
        atomic_replace(temporary, path)


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
