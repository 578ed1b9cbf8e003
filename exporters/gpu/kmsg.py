"""Where kernel-log records come from: `/dev/kmsg` itself, or a plain file (tests, the simulated
backend, a node that ships its kernel log to a file).

Both start at the end of the log: a restarted exporter must not count old XIDs again (to
`increase()` a replay looks like a burst of new faults and would cordon healthy nodes).

`/dev/kmsg` (linux Documentation/ABI/testing/dev-kmsg): one read() returns one whole record,
`prio,seq,usec,flags[,...];message\\n` followed by ` KEY=value` continuation lines; bytes outside
printable ASCII arrive as `\\xNN`; `lseek(SEEK_END)` moves past the last record; after an overrun
read() fails once with EPIPE and goes on from the oldest record still kept. Lost records show as
gaps in `seq` and are counted. A plain file is read line by line; a partial last line is kept
until its newline arrives; a truncated or replaced file is read again from its start.
"""

from __future__ import annotations

import errno
import os
import re
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

READ_SIZE = 8192  # >= CONSOLE_EXT_LOG_MAX, or read() fails with EINVAL
_HEADER = re.compile(rb"^(\d+),(\d+),(\d+),[^;]*;")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Record:
    message: str
    facility: int | None = None  # 0 = the kernel; None for a line without a kmsg header
    seq: int | None = None


class Source(Protocol):
    lost: int  # records lost to overruns, so far

    def read(self, timeout: float) -> list[Record]: ...

    def close(self) -> None: ...


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\x" in text else text


def parse_record(raw: bytes) -> Record | None:
    """One kmsg record (or one plain line, which may carry a kmsg header); continuation lines
    (` KEY=value`) are dropped."""
    first = raw.split(b"\n", 1)[0]
    if not first.strip() or first.startswith(b" "):
        return None
    m = _HEADER.match(first)
    if m is None:
        return Record(_unescape(first.decode(errors="replace").rstrip("\r")))
    prio, seq = int(m.group(1)), int(m.group(2))
    return Record(_unescape(first[m.end():].decode(errors="replace")), facility=prio >> 3, seq=seq)


def open_at_end(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.lseek(fd, 0, os.SEEK_END)  # never replay what was logged before we started
    except OSError:
        os.close(fd)
        raise
    return fd


class KmsgSource:
    """The kernel's /dev/kmsg, non-blocking, from its end."""

    def __init__(self, path: str = "/dev/kmsg", *, read: Callable[[int, int], bytes] = os.read,
                 opener: Callable[[str], int] | None = None) -> None:
        self._read = read  # injectable, with opener: tests drive EPIPE and record boundaries through them
        self.fd = (opener or open_at_end)(path)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._seq: int | None = None
        self.lost = 0

    def read(self, timeout: float) -> list[Record]:
        if not self._poll.poll(max(timeout, 0) * 1000):
            return []
        out: list[Record] = []
        for _ in range(10_000):  # bounded: a flood cannot starve the caller's stop check
            try:
                raw = self._read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overrun: the seq gap of the next record says how many
                    continue
                raise
            if not raw:
                break
            rec = parse_record(raw)
            if rec is None:
                continue
            if rec.seq is not None:
                if self._seq is not None and rec.seq > self._seq + 1:
                    self.lost += rec.seq - self._seq - 1
                self._seq = rec.seq
            out.append(rec)
        return out

    def close(self) -> None:
        os.close(self.fd)


class FileSource:
    """A plain file, tailed from its end (or from its start if it appears after we started)."""

    def __init__(self, path: str, *, wait: Callable[[float], object]) -> None:
        self.path = path
        self._wait = wait  # the reader's stop event's wait: no fixed sleep blocks a stop
        self._file = None
        self._inode: int | None = None
        self._buf = b""
        self.lost = 0
        self._open(at_end=True)

    def _open(self, *, at_end: bool) -> None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open across reads
        except FileNotFoundError:
            self._file = None
            return
        st = os.fstat(f.fileno())
        if at_end:
            f.seek(0, os.SEEK_END)
        self._file, self._inode, self._buf = f, st.st_ino, b""

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self._file is None or st.st_ino != self._inode or st.st_size < self._file.tell()

    def read(self, timeout: float) -> list[Record]:
        data = self._file.read(READ_SIZE * 8) if self._file is not None else b""
        if not data:
            if self._rotated():  # replaced or truncated: what it holds now is new
                if self._file is not None:
                    self._file.close()
                self._open(at_end=False)
                data = self._file.read(READ_SIZE * 8) if self._file is not None else b""
            if not data:
                self._wait(timeout)
                return []
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [r for r in map(parse_record, lines) if r is not None]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def is_char_device(path: str) -> bool:
    import stat

    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False
