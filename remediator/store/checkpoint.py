"""The WAL is copied into the database file in the background, so no webhook's commit pays for a
checkpoint (a storm's WAL is a thousand pages: copying them and syncing the file is ~15 ms). The
intake connection's own autocheckpoint is off; this thread runs PASSIVE checkpoints, which never
wait for a lock, on its own connection."""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, path: str, interval: float = 0.5) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next round tries again; the WAL only grows meanwhile
                log.warning("WAL checkpoint failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._db.close()
