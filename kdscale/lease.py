"""One driver per study: a lease file, `<storage>/<study>/_lease.json`, taken before any work.

It holds the holder's host, pid, start time, last heartbeat and a random token. The driver takes
it before it starts Ray, opens MLflow or reads the table, refreshes its heartbeat from a thread
every `heartbeat_s`, and removes it at the end, also when the study fails or is interrupted. A
second driver of the same study refuses with one line naming the holder (LeaseHeld, exit status
1), unless the lease is stale: its holder's pid is gone on this host, or it has had no heartbeat
for `stale_s` (120 s), e.g. a driver killed on another node; then it is taken over and the driver
says so. `take_over=True` (`--take-over`) takes it whatever its age, for a holder known to be gone.

How "atomically" depends on the storage:
- A local path or a shared mount (NFS included): the lease is written whole to a temporary file
  and hard-linked to its name, which fails if the name exists (link is atomic on POSIX file
  systems and on NFS, where O_EXCL was not always): of two drivers that start at once exactly one
  gets it, and nobody ever reads half a lease. Taking over a stale lease renames it away first
  (one rename wins) and checks that what it moved is the stale lease it judged.
- An object store (s3://...): pyarrow has no create-if-absent, so the driver writes its lease if
  none is there, waits `settle_s` (1 s) and reads it back: the later of two writers wins and the
  other refuses. Two drivers that start within the same second can both pass; that window is the
  limit of this scheme there. Run one driver per study, or keep `--storage` on a shared mount.
A clock difference between hosts shifts a remote holder's heartbeat age; keep `stale_s` well above it.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pyarrow.fs as pafs

from kdscale.errors import EnvironmentFault, os_reason

LEASE_FILE = "_lease.json"
STALE_S = 120.0  # a lease without a heartbeat for this long is stale
HEARTBEAT_S = 20.0


class LeaseHeld(EnvironmentFault):
    """Another driver runs this study."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # a zombie (killed, not yet reaped) is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def describe(record: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("start", 0)))
    return f"{record.get('host', '?')} pid {record.get('pid', '?')} (started {started})"


class StudyLease:
    def __init__(self, store, stale_s: float = STALE_S, heartbeat_s: float | None = None, settle_s: float = 1.0,
                 log=None):
        self.fs, self.study = store.fs, store.study
        self.path = f"{store.root}/{LEASE_FILE}"
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.stale_s, self.settle_s = stale_s, settle_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(HEARTBEAT_S, stale_s / 4)
        self.log = log or (lambda message: None)
        now = time.time()
        self.record = {"study": store.study, "host": socket.gethostname(), "pid": os.getpid(), "start": now,
                       "heartbeat": now, "token": uuid.uuid4().hex}
        self.held, self.lost = False, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading and judging -----------------------------------------------------------------
    def _read(self, path: str | None = None) -> dict | None:
        """The lease at `path` (None if there is none); an unreadable one counts as a stale stranger."""
        try:
            with self.fs.open_input_stream(path or self.path) as f:
                payload = f.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            if self.fs.get_file_info(path or self.path).type == pafs.FileType.NotFound:
                return None
            raise EnvironmentFault(f"storage: cannot read the lease {path or self.path}: {os_reason(error)}") from error
        try:
            record = json.loads(payload)
            return record if isinstance(record, dict) else {"token": None, "heartbeat": 0}
        except ValueError:
            return {"token": None, "heartbeat": 0}  # damaged: stale by its (absent) heartbeat

    def _stale(self, record: dict) -> str | None:
        """Why the lease is stale, or None if its holder looks alive."""
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int) \
                and not _pid_alive(record["pid"]):
            return f"its driver, pid {record['pid']} on this host, is gone"
        age = time.time() - float(record.get("heartbeat") or 0)
        if age > self.stale_s:
            return f"no heartbeat for {age:.0f} s (stale after {self.stale_s:.0f} s)"
        return None

    # --- taking and giving back --------------------------------------------------------------
    def acquire(self, take_over: bool = False) -> str | None:
        """Take the lease, or raise LeaseHeld. Returns a line to log when a lease was taken over."""
        note = None
        for _ in range(5):
            if self._create():
                self.held = True
                self._thread = threading.Thread(target=self._beat, name="kdscale-lease", daemon=True)
                self._thread.start()
                return note
            held = self._read()
            if held is None:
                continue  # released meanwhile: try again
            reason = self._stale(held) or ("--take-over" if take_over else None)
            if reason is None:
                age = time.time() - float(held.get("heartbeat") or 0)
                raise LeaseHeld(f"study {self.study} is being run by another driver: {describe(held)}, last "
                                f"heartbeat {age:.0f} s ago (lease {self.path}); wait for it to finish, or rerun "
                                "with --take-over if that driver is gone")
            if self._break(held):
                note = f"study {self.study}: took over the lease of {describe(held)}: {reason}"
        raise LeaseHeld(f"study {self.study}: could not take the lease {self.path}: other drivers keep taking it")

    def _tmp(self) -> str:  # the store's temporary-file prefix: a sweep removes what a crash left
        return f"{self.path.rsplit('/', 1)[0]}/.tmp-lease-{self.record['token']}"

    def _payload(self) -> bytes:
        return json.dumps(self.record, indent=1).encode()

    def _create(self) -> bool:
        """Write the lease if there is none; True if this driver now holds it."""
        try:
            if self.local:
                tmp = self._tmp()
                try:
                    with open(tmp, "wb") as f:
                        f.write(self._payload())
                    os.link(tmp, self.path)  # fails if the name exists: atomic create-if-absent
                    return True
                except FileExistsError:
                    return False
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            if self._read() is not None:
                return False
            with self.fs.open_output_stream(self.path) as out:
                out.write(self._payload())
            time.sleep(self.settle_s)  # a concurrent writer's lease lands within this
            mine = self._read()
            return mine is not None and mine.get("token") == self.record["token"]
        except OSError as error:
            raise EnvironmentFault(f"storage: cannot write the lease {self.path}: {os_reason(error)}") from error

    def _break(self, stale: dict) -> bool:
        """Remove the stale lease `stale` (not a newer one that replaced it); True if this call did."""
        if not self.local:
            self.fs.delete_file(self.path)
            return True
        moved = f"{self.path}.{self.record['token']}.taken"
        try:
            os.rename(self.path, moved)  # of several drivers taking over, one moves it
        except FileNotFoundError:
            return False
        if (self._read(moved) or {}).get("token") != stale.get("token"):
            try:  # a fresh lease replaced the stale one meanwhile: put it back
                os.link(moved, self.path)
            except FileExistsError:
                pass
        os.unlink(moved)
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                current = self._read()
                if (current or {}).get("token") != self.record["token"]:
                    self.lost = describe(current) if current else "nobody (the lease file was removed)"
                    self.log(f"warning: study {self.study}: this driver's lease was taken over by {self.lost}")
                    return
                self.record["heartbeat"] = time.time()
                tmp = self._tmp()
                with self.fs.open_output_stream(tmp) as out:
                    out.write(self._payload())
                self.fs.move(tmp, self.path)
            except (OSError, EnvironmentFault):
                pass  # a full disk stops the heartbeat, not the study; another driver may then take over

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.held and self.lost is None:
            try:
                if (self._read() or {}).get("token") == self.record["token"]:
                    self.fs.delete_file(self.path)
            except (OSError, EnvironmentFault):
                pass
        self.held = False
