"""The embedded store: one SQLite file that one node, or several nodes on one host, share."""

from __future__ import annotations

import logging
import os
import resource
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from sidecar.errors import EsError, disk_full, status_exception
from sidecar.ids import new_id
from sidecar.store.base import AlreadyExists, AliasChanged, ModelDeployed, ModelMissing, PartInfo, Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (model_id TEXT PRIMARY KEY, config BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS model_aliases (alias TEXT PRIMARY KEY, model_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS definition_parts (
    model_id TEXT NOT NULL, part INTEGER NOT NULL, total_parts INTEGER NOT NULL,
    total_definition_length INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (model_id, part));
CREATE TABLE IF NOT EXISTS vocabularies (model_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (model_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS routes (
    model_id TEXT NOT NULL, node_id TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    error_status INTEGER NOT NULL, PRIMARY KEY (model_id, node_id));
CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, doc BLOB NOT NULL, last_seen REAL NOT NULL);
"""
_BUSY_TIMEOUT_MS = 10_000
# Room kept aside for deletes, so a full disk can be emptied: a delete writes new freelist and pointer-map pages
# to the WAL (about 2 MiB per GiB deleted) before it frees anything.
_RESERVE_BYTES = 4 << 20
_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
_SIZE_LIMIT_MARGIN = 1 << 20  # a file this close to RLIMIT_FSIZE counts as having hit it
_VACUUM_STEP_PAGES = 256  # pages given back per step: the WAL never needs more than this much room at once

log = logging.getLogger(__name__)


class SqliteStore(Store):
    """Transactions make every write atomic; WAL and a busy timeout let several processes share the file."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._reserve = self._path.with_name(f"{self._path.name}.reserve")
        with self._write() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('cluster_uuid', ?)", (new_id(),))
        self._cluster_uuid = self._read_one("SELECT value FROM meta WHERE key = 'cluster_uuid'")[0]
        self._refill_reserve()

    @property
    def cluster_uuid(self) -> str:
        return self._cluster_uuid

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
            db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file: freed pages can go back
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA secure_delete = OFF")  # zeroing freed pages writes them all: no delete on a full disk
            self._local.db = db
        return db

    @contextmanager
    def _write(self, *, freeing: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; Elasticsearch's flood-stage block (429) when the disk has no room for it.

        A `freeing` write (a delete) may spend the room kept aside for it, so it works on a full disk; afterwards
        the pages it freed go back to the filesystem and the reserve is put back where there is room.
        """
        if freeing:
            self._reserve.unlink(missing_ok=True)
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite has already rolled back a transaction that ran out of room
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if not self._out_of_room(exc):
                raise
            log.error("no room for a write to %s: %s", self._path, exc)
            raise (self._cannot_free() if freeing else disk_full(self._path.name)) from None
        finally:
            if freeing:
                self._give_back_freed_pages(db)

    def _cannot_free(self) -> EsError:
        """Why even a delete found no room: the reserve did not cover it, or the file is at its size limit."""
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            why = f"the process's file size limit (RLIMIT_FSIZE) of [{limit}] bytes keeps [{self._path.name}] from "
            why += "taking back its pages from the write-ahead log; raise the limit"
        else:
            why = f"the disk holding [{self._path.name}] is full and its reserve for deletes is spent; free disk space"
        return status_exception(429, f"not enough room on disk to delete: {why}")

    def _out_of_room(self, exc: sqlite3.OperationalError) -> bool:
        """A full disk, or a file at the process's size limit (RLIMIT_FSIZE), which SQLite reports as a failed
        write: it keeps the write's errno to itself."""
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
            return True
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if exc.sqlite_errorcode != sqlite3.SQLITE_IOERR_WRITE or limit == resource.RLIM_INFINITY:
            return False
        files = (self._path, self._path.with_name(f"{self._path.name}-wal"))
        return any(f.exists() and f.stat().st_size > limit - _SIZE_LIMIT_MARGIN for f in files)

    def _give_back_freed_pages(self, db: sqlite3.Connection) -> None:
        """Shrink the file by what deletes freed, a step at a time; best effort, the delete itself is done."""
        try:
            if db.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
                return  # a file made before auto-vacuum was set keeps its free pages for reuse
            while db.execute("PRAGMA freelist_count").fetchone()[0]:
                db.execute(f"PRAGMA incremental_vacuum({_VACUUM_STEP_PAGES})").fetchall()
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.OperationalError as exc:
            log.warning("could not give freed pages back to the filesystem: %s", exc)
        self._refill_reserve()

    def _refill_reserve(self) -> None:
        """Keep `_RESERVE_BYTES` on disk for deletes, where there is room for it."""
        if self._reserve.exists():
            return
        partial = self._reserve.with_name(f"{self._reserve.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with open(partial, "wb") as out:
                out.write(bytes(_RESERVE_BYTES))
            os.replace(partial, self._reserve)
        except OSError:
            partial.unlink(missing_ok=True)

    def _read_one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._db().execute(sql, args).fetchone()

    def _insert(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            with self._write() as db:
                db.execute(sql, args)
        except sqlite3.IntegrityError:
            raise AlreadyExists() from None

    # models -------------------------------------------------------------------------------------
    def create_model(self, config: dict[str, Any]) -> None:
        self._insert("INSERT INTO models VALUES (?, ?)", (config["model_id"], orjson.dumps(config)))

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        row = self._read_one("SELECT config FROM models WHERE model_id = ?", (model_id,))
        return orjson.loads(row[0]) if row else None

    def list_models(self) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT config FROM models ORDER BY model_id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def delete_model(self, model_id: str) -> bool:
        """The deployment check and the delete are one transaction: no `create_deployment` or `put_model_alias`
        falls in between."""
        with self._write(freeing=True) as db:
            if db.execute("SELECT 1 FROM deployments WHERE model_id = ?", (model_id,)).fetchone():
                raise ModelDeployed(model_id)
            deleted = db.execute("DELETE FROM models WHERE model_id = ?", (model_id,)).rowcount
            db.execute("DELETE FROM model_aliases WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM definition_parts WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM vocabularies WHERE model_id = ?", (model_id,))
        return deleted > 0

    def get_model_alias(self, alias: str) -> str | None:
        row = self._read_one("SELECT model_id FROM model_aliases WHERE alias = ?", (alias,))
        return row[0] if row else None

    def model_aliases(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT alias, model_id FROM model_aliases ORDER BY alias").fetchall())

    def put_model_alias(self, alias: str, model_id: str, expected: str | None) -> None:
        """The model check, the compare and the write are one transaction."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM models WHERE model_id = ?", (model_id,)).fetchone():
                raise ModelMissing(model_id)
            row = db.execute("SELECT model_id FROM model_aliases WHERE alias = ?", (alias,)).fetchone()
            if (row[0] if row else None) != expected:
                raise AliasChanged(alias)
            db.execute("INSERT OR REPLACE INTO model_aliases VALUES (?, ?)", (alias, model_id))

    def delete_model_alias(self, alias: str, model_id: str) -> str | None:
        with self._write(freeing=True) as db:
            row = db.execute("SELECT model_id FROM model_aliases WHERE alias = ?", (alias,)).fetchone()
            if row is not None and row[0] == model_id:
                db.execute("DELETE FROM model_aliases WHERE alias = ?", (alias,))
        return row[0] if row else None

    def put_definition_part(self, model_id: str, info: PartInfo, data: bytes) -> None:
        self._insert(
            "INSERT INTO definition_parts VALUES (?, ?, ?, ?, ?)",
            (model_id, info.part, info.total_parts, info.total_definition_length, data),
        )

    def definition_parts(self, model_id: str) -> list[PartInfo]:
        rows = self._db().execute(
            "SELECT part, total_parts, total_definition_length, length(data) FROM definition_parts"
            " WHERE model_id = ? ORDER BY part",
            (model_id,),
        )
        return [PartInfo(*row) for row in rows]

    def iter_definition(self, model_id: str) -> Iterator[bytes]:
        parts = [p.part for p in self.definition_parts(model_id)]
        for part in parts:
            row = self._read_one("SELECT data FROM definition_parts WHERE model_id = ? AND part = ?", (model_id, part))
            if row is not None:
                yield row[0]

    def put_vocabulary(self, model_id: str, vocabulary: dict[str, Any]) -> None:
        self._insert("INSERT INTO vocabularies VALUES (?, ?)", (model_id, orjson.dumps(vocabulary)))

    def get_vocabulary(self, model_id: str) -> dict[str, Any] | None:
        row = self._read_one("SELECT doc FROM vocabularies WHERE model_id = ?", (model_id,))
        return orjson.loads(row[0]) if row else None

    # deployments --------------------------------------------------------------------------------
    def create_deployment(self, deployment: dict[str, Any]) -> None:
        """The model check and the insert are one transaction: no `delete_model` falls in between."""
        model_id = deployment["model_id"]
        try:
            with self._write() as db:
                if not db.execute("SELECT 1 FROM models WHERE model_id = ?", (model_id,)).fetchone():
                    raise ModelMissing(model_id)
                db.execute("INSERT INTO deployments VALUES (?, ?)", (model_id, orjson.dumps(deployment)))
        except sqlite3.IntegrityError:
            raise AlreadyExists() from None

    def get_deployment(self, model_id: str) -> dict[str, Any] | None:
        row = self._read_one("SELECT doc FROM deployments WHERE model_id = ?", (model_id,))
        return orjson.loads(row[0]) if row else None

    def list_deployments(self, fresh: bool = True) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT doc FROM deployments ORDER BY model_id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def update_deployment(self, model_id: str, changes: dict[str, Any]) -> None:
        with self._write() as db:
            row = db.execute("SELECT doc FROM deployments WHERE model_id = ?", (model_id,)).fetchone()
            if row is not None:
                doc = {**orjson.loads(row[0]), **changes}
                db.execute("UPDATE deployments SET doc = ? WHERE model_id = ?", (orjson.dumps(doc), model_id))

    def delete_deployment(self, model_id: str) -> None:
        with self._write(freeing=True) as db:
            db.execute("DELETE FROM deployments WHERE model_id = ?", (model_id,))
            db.execute("DELETE FROM routes WHERE model_id = ?", (model_id,))

    def put_route(self, model_id: str, node_id: str, state: str, reason: str = "", error_status: int = 0) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM deployments WHERE model_id = ?", (model_id,)).fetchone():
                db.execute(
                    "INSERT OR REPLACE INTO routes VALUES (?, ?, ?, ?, ?)",
                    (model_id, node_id, state, reason, error_status),
                )

    def routes(self, model_id: str) -> dict[str, dict[str, Any]]:
        rows = self._db().execute(
            "SELECT node_id, state, reason, error_status FROM routes WHERE model_id = ? ORDER BY node_id", (model_id,)
        )
        return {
            node: {"routing_state": state, "reason": reason, "error_status": status}
            for node, state, reason, status in rows
        }

    def delete_route(self, model_id: str, node_id: str) -> None:
        with self._write(freeing=True) as db:
            db.execute("DELETE FROM routes WHERE model_id = ? AND node_id = ?", (model_id, node_id))

    # nodes --------------------------------------------------------------------------------------
    def heartbeat(self, node: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)", (node["id"], orjson.dumps(node), time.time()))

    def nodes(self, fresh: bool = True) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT doc, last_seen FROM nodes ORDER BY node_id").fetchall()
        return [{**orjson.loads(doc), "last_seen": seen} for doc, seen in rows]

    def remove_node(self, node_id: str) -> None:
        with self._write(freeing=True) as db:
            db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
            db.execute("DELETE FROM routes WHERE node_id = ?", (node_id,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
