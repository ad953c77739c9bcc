"""Where `finsent score` reads and writes: a local path, or an object-storage URL (gs://, or any
other scheme fsspec knows, e.g. s3:// with s3fs installed), behind the few operations it needs.

Object storage cannot append to or truncate an object, and an upload becomes visible only once
complete: so a remote output is built as one object per chunk (`OUTPUT.partial/part-N`) and its
progress record is rewritten whole after each; see writers.PartsWriter."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path, PurePosixPath

from finsent.bulk.errors import ScoreError


def is_url(where) -> bool:
    return isinstance(where, str) and "://" in where


def location(text) -> "Path | str":
    """What the user typed: a URL stays a string, anything else is a local path."""
    return text if is_url(str(text)) else Path(text)


def filesystem(url: str):
    try:
        import fsspec

        with warnings.catch_warnings():  # google-api-core's notice about Python versions, on every run
            warnings.simplefilter("ignore", FutureWarning)
            return fsspec.core.url_to_fs(url)[0]
    except ImportError as exc:  # fsspec is there but not the scheme's package (gcsfs, s3fs)
        raise ScoreError(f"{url}: {exc}; for gs:// pip install 'finsent-client[gcs]'") from None
    except ValueError as exc:  # an unknown scheme
        raise ScoreError(f"{url}: {exc}") from None


def suffix(where) -> str:
    return PurePosixPath(str(where)).suffix


def name(where) -> str:
    return PurePosixPath(str(where)).name


def sibling(where, ending: str):
    """`where` with `ending` added to its name, in the same folder or bucket prefix."""
    return where + ending if is_url(where) else where.with_name(where.name + ending)


def child(where, leaf: str):
    return f"{where}/{leaf}" if is_url(where) else where / leaf


def open_file(where, mode: str = "rb", **kw):
    if is_url(where):
        import fsspec

        return fsspec.open(where, mode, **kw).open()
    return open(where, mode, **kw)


def exists(where) -> bool:
    return filesystem(where).exists(where) if is_url(where) else where.exists()


def is_file(where) -> bool:
    return filesystem(where).isfile(where) if is_url(where) else where.is_file()


def unlink(where) -> None:
    if is_url(where):
        fs = filesystem(where)
        if fs.exists(where):
            fs.rm(where)
    else:
        where.unlink(missing_ok=True)


def remove(where) -> None:
    """A file or a folder (a partial output), if it is there."""
    if is_url(where):
        fs = filesystem(where)
        fs.invalidate_cache()
        if fs.exists(where):
            fs.rm(where, recursive=True)
    elif where.is_dir():
        shutil.rmtree(where, ignore_errors=True)
    else:
        where.unlink(missing_ok=True)


def read_text(where) -> str:
    return filesystem(where).cat(where).decode() if is_url(where) else where.read_text()


def write_text(where, text: str) -> None:
    """Whole or not at all: an object upload, or a local file renamed into place."""
    if is_url(where):
        filesystem(where).pipe(where, text.encode())
    else:
        tmp = where.with_name(where.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, where)


def move_text(source, target) -> None:
    """A small record to a new name (objects: written anew, then the old one removed)."""
    if is_url(source):
        write_text(target, read_text(source))
        unlink(source)
    else:
        os.replace(source, target)


def identity(where) -> tuple[str, int, int, str | None]:
    """(full name, size, mtime_ns, version): what says a rerun reads the same input."""
    if is_url(where):
        info = filesystem(where).info(where)
        version = info.get("generation") or info.get("ETag") or info.get("etag") or str(info.get("mtime"))
        return where, int(info.get("size") or 0), 0, str(version)
    stat = where.stat()
    return str(where.resolve()), stat.st_size, stat.st_mtime_ns, None
