"""Storage failures as StorageError: a full or read-only disk (or a failing one) is not a bug, it is a message a
person can act on, never a raw sqlite3/OSError (whose text may hold server paths). Other errors pass unchanged."""
from __future__ import annotations

import errno
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from ..errors import StorageError

_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_PERM = 13, 8, 3
_SQLITE_IO = {10: "disk I/O error", 14: "cannot open the database file", 11: "the database file is damaged",
              26: "the database file is not a database"}  # IOERR, CANTOPEN, CORRUPT, NOTADB
_SQLITE_TEXT = ((_SQLITE_FULL, "disk is full"), (_SQLITE_READONLY, "readonly database"), (10, "disk i/o error"),
                (14, "unable to open database"), (11, "malformed"), (26, "not a database"))
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_IO_ERRNOS = {errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.EMFILE,
              errno.ENFILE, errno.ENXIO, errno.ENODEV}


def full(what: str) -> StorageError:
    return StorageError(f"storage is full: could not {what}; free some disk space and try again")


def read_only(what: str) -> StorageError:
    return StorageError(f"storage is read-only: could not {what}; the data folder must be writable")


def as_storage_error(e: BaseException, what: str) -> StorageError | None:
    """The StorageError for a storage failure, or None for anything else (constraint, programming errors)."""
    if isinstance(e, sqlite3.DatabaseError):
        code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+; the message otherwise
        code = code & 0xFF if code is not None else next(
            (c for c, text in _SQLITE_TEXT if text in str(e).lower()), None)
        if code == _SQLITE_FULL:
            return full(what)
        if code in (_SQLITE_READONLY, _SQLITE_PERM):
            return read_only(what)
        if code in _SQLITE_IO:
            return StorageError(f"storage error ({_SQLITE_IO[code]}): could not {what}")
        return None
    if isinstance(e, OSError) and e.errno is not None:
        if e.errno in _FULL_ERRNOS:
            return full(what)
        if e.errno in _READONLY_ERRNOS:
            return read_only(what)
        if e.errno in _IO_ERRNOS:  # strerror only: str(e) would show the server's path
            return StorageError(f"storage error ({e.strerror or 'I/O error'}): could not {what}")
    return None


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Raise storage failures inside the block as StorageError("... could not <what> ...")."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as e:
        err = as_storage_error(e, what)
        if err is None:
            raise
        raise err from e
