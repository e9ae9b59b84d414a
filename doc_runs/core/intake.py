"""The one way files enter the store, used by the command line, the inbox folder and the
queue's path messages (an HTTP upload streams through DocumentStore.begin_upload, the same
temporary-file-and-rename writer): only regular files are opened, a watched folder never
leads outside itself, the size limit holds while copying, and the name a document arrived
under is kept whatever its bytes."""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from doc_runs.core.outcomes import Reason, ReasonedError
from doc_runs.core.store import DEFAULT_TENANT, DocumentStore, TooLarge, display_name

_BLOCK = 1024 * 1024
# Names that say "still being written" by the common upload and download tools.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".download")
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


class IntakeRefused(ReasonedError):
    """The input was not stored; `reason` says why in the pipeline's terms."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(reason, detail)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse_unless_regular(shown: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise IntakeRefused(Reason.NOT_REGULAR_FILE, f"{shown} is {_kind(info.st_mode)}")


class _SourceUnreadable(Exception):
    pass


def _read_blocks(fd: int) -> Iterator[bytes]:
    """The file's bytes; a read error is the source's fault, unlike a write error of the
    store (a full disk), which passes through as OSError so the caller can try again."""
    while True:
        try:
            block = os.read(fd, _BLOCK)
        except OSError as exc:
            raise _SourceUnreadable(exc.strerror or str(exc)) from exc
        if not block:
            return
        yield block


def _opened_path(fd: int) -> str | None:
    """Where the open file is, from its descriptor (the kernel's answer, whatever the path it
    was opened by has become since); None where this system cannot tell."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    import fcntl

    if hasattr(fcntl, "F_GETPATH"):  # macOS
        return os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))).rstrip("\0")
    return None


def _refuse_unless_inside(shown: str, fd: int, opened: os.stat_result, root: str,
                          max_links: int) -> None:
    where = _opened_path(fd)
    if where is None:
        raise IntakeRefused(Reason.UNREADABLE, f"{shown}: this system cannot tell where an "
                            "open file is, so a file under a root is not opened")
    if not _inside(where, root):
        raise IntakeRefused(Reason.OUTSIDE_FOLDER, f"{shown} leads outside its folder")
    if opened.st_nlink > max_links:
        raise IntakeRefused(Reason.OUTSIDE_FOLDER,
                            f"{shown} is a file with {opened.st_nlink} hard links, not all of "
                            "them known to be in its folder")


def store_file(store: DocumentStore, path: str | os.PathLike[str], *,
               tenant: str = DEFAULT_TENANT, max_bytes: int | None = None,
               expected: os.stat_result | None = None,
               shown_as: str | bytes | None = None,
               inside: str | None = None, max_links: int = 1) -> str:
    """Store one file and remember the name it came under; return its document id.

    The file is checked with stat before it is opened, so a FIFO or a device is never
    opened (opening a FIFO waits for a writer forever). It is opened non-blocking and checked
    again on the open descriptor, so a file swapped for something else in between is refused
    too. `expected` is the stat a caller already vetted (a watched folder's scan): the opened
    file must be that very file. `shown_as` is the name the reasons use (default: the path).

    `inside` (a folder's real path) keeps the file within that folder whatever happens to the
    path between a check and the open (a folder on it swapped for a link out): where the open
    descriptor is must be inside, and the file may have at most `max_links` hard links (a
    hard link in the folder to a file elsewhere is that file).
    """
    shown = display_name(shown_as if shown_as is not None else os.fspath(path))
    try:
        info = os.stat(path)
        _refuse_unless_regular(shown, info)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise IntakeRefused(Reason.UNREADABLE,
                            f"{shown}: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        _refuse_unless_regular(shown, opened)
        if inside is not None:
            _refuse_unless_inside(shown, fd, opened, inside, max_links)
        wanted = expected or info
        if (opened.st_dev, opened.st_ino) != (wanted.st_dev, wanted.st_ino):
            raise IntakeRefused(Reason.UNREADABLE,
                                f"{shown} changed while being opened")
        try:
            document_id = store.put_stream(_read_blocks(fd), tenant=tenant, max_bytes=max_bytes)
        except TooLarge as too_large:
            raise IntakeRefused(Reason.TOO_LARGE,
                                f"{shown}: {too_large}") from None
        except _SourceUnreadable as exc:
            raise IntakeRefused(Reason.UNREADABLE,
                                f"{shown}: {exc}") from None
    finally:
        os.close(fd)
    store.add_source_name(document_id, os.fsencode(Path(path).name))
    return document_id


@dataclass(frozen=True)
class FolderEntry:
    """A file found in a watched folder: the stat it was vetted by, or why it is refused."""

    path: Path
    relative: bytes  # the path below the folder, byte for byte
    changed_ns: int  # when it arrived or last changed (see _changed_ns)
    folder: str  # the sub-folder it is in, as "device:inode"; "" for the watched folder itself
    info: os.stat_result | None
    problem: IntakeRefused | None = None


def _changed_ns(*infos: os.stat_result) -> int:
    # ctime moves on every write and on a rename into the folder, and no one can set it (mtime
    # does not move with `mv`, and `touch -d` can put it in the future).
    return max(i.st_ctime_ns for i in infos)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan_watched_folder(root: str | os.PathLike[str]) -> list[FolderEntry]:
    """Every candidate file below `root`, without following anything out of it.

    Hidden files and names that say "partial" are not candidates. A symbolic link is
    followed only when it resolves inside the folder; a link loop or a dangling link is
    reported as a problem, as is a link out, a file with hard links whose names are not all
    inside the folder (told by the link count, whether it is reached by its own name or by a
    symbolic link), a FIFO, a socket or a device. Directories reached only through links are
    not walked. Files that vanish during the scan are left out.
    """
    real_root = os.path.realpath(root)
    partial = tuple(s.encode() for s in _PARTIAL_SUFFIXES)
    raw_root = os.fsencode(root)
    found: list[tuple[Path, bytes, int, str, os.stat_result | None, IntakeRefused | None]] = []
    # Names each inode has below the folder, hidden and partial ones included.
    inode_names: Counter[tuple[int, int]] = Counter()
    for folder, dirs, files in os.walk(raw_root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(b"."))
        folder_key = ""
        if folder != raw_root:
            try:
                folder_info = os.stat(folder)
            except OSError:
                continue
            folder_key = f"{folder_info.st_dev}:{folder_info.st_ino}"
        for name in sorted(files):
            raw_path = os.path.join(folder, name)
            try:
                own = os.lstat(raw_path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                relative = os.path.relpath(raw_path, raw_root)
                found.append((Path(os.fsdecode(raw_path)), relative, 0, folder_key, None,
                              IntakeRefused(Reason.UNREADABLE,
                                            f"{display_name(relative)}: {exc.strerror}")))
                continue
            if stat.S_ISREG(own.st_mode):
                inode_names[(own.st_dev, own.st_ino)] += 1
            if name.startswith(b".") or name.lower().endswith(partial):
                continue
            relative = os.path.relpath(raw_path, raw_root)
            shown = display_name(relative)
            try:
                if stat.S_ISLNK(own.st_mode):
                    target = os.path.realpath(raw_path, strict=True)
                    if not _inside(os.fsdecode(target), real_root):
                        raise IntakeRefused(
                            Reason.OUTSIDE_FOLDER,
                            f"{shown} is a symbolic link to {display_name(target)}, outside "
                            "the watched folder")
                    info = os.stat(raw_path)
                else:
                    info = own
                _refuse_unless_regular(shown, info)
            except IntakeRefused as refused:
                found.append((Path(os.fsdecode(raw_path)), relative, _changed_ns(own),
                              folder_key, None, refused))
                continue
            except OSError as exc:
                # ELOOP for a link loop, ENOENT for a dangling link.
                found.append((Path(os.fsdecode(raw_path)), relative, _changed_ns(own),
                              folder_key, None,
                              IntakeRefused(Reason.UNREADABLE, f"{shown}: {exc.strerror}")))
                continue
            found.append((Path(os.fsdecode(raw_path)), relative, _changed_ns(own, info),
                          folder_key, info, None))

    entries = []
    for path, relative, changed, folder_key, info, problem in found:
        if info is not None and info.st_nlink > inode_names[(info.st_dev, info.st_ino)]:
            info, problem = None, IntakeRefused(
                Reason.OUTSIDE_FOLDER,
                f"{display_name(relative)} is (or links to) a file with {info.st_nlink} hard "
                "links, not all of them in the watched folder")
        entries.append(FolderEntry(path, relative, changed, folder_key, info, problem))
    return entries
