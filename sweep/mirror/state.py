"""What the W&B mirror has uploaded, kept in one small table beside the study.

The study storage stays the source of truth; this table only remembers, per study and trial,
which W&B run holds it and the hash of the trial content that was mirrored. `sweep mirror` then
uploads exactly what is missing or changed, from any machine that reaches the same database.

Row `trial_number = -1` (STUDY_ROW) belongs to the study itself: it carries the study's random
run-id salt (so two databases with a study of the same name never share W&B runs) and the
study-level summary run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

TABLE_NAME = "cloudsweep_wandb_mirror"
STUDY_ROW = -1

_metadata = sa.MetaData()
_table = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("trial_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("run_path", sa.String(512), nullable=False, default=""),
    sa.Column("content_hash", sa.String(64), nullable=False, default=""),
    sa.Column("mode", sa.String(16), nullable=False, default=""),  # online | offline | "" (salt)
    sa.Column("run_dir", sa.Text, nullable=True),  # local run folder (offline: for `wandb sync`)
    sa.Column("host", sa.String(256), nullable=False, default=""),
    sa.Column("mirrored_at", sa.DateTime, nullable=True),
)


@dataclass(frozen=True)
class MirrorRecord:
    """One mirrored trial (or, with trial_number == STUDY_ROW, the study's summary run)."""

    study_name: str
    trial_number: int
    run_id: str
    run_path: str
    content_hash: str
    mode: str
    run_dir: str | None
    host: str
    mirrored_at: datetime | None

    def satisfies(self, content_hash: str, mode: str) -> bool:
        """True when nothing needs uploading: same content, and online if online is asked.

        An offline folder on some machine is enough for an offline request; an online request
        re-mirrors it (the same run id resumes, so W&B never sees a duplicate).
        """
        if self.content_hash != content_hash or not self.mode:
            return False
        return mode == "offline" or self.mode == "online"


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # The sweep writes the same file from other processes: wait for the lock, don't fail.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


class MirrorState:
    """Reads and writes the mirror table through its own engine on the study's database URL.

    The URL may carry a password: it is kept only inside the engine, never in a message.
    """

    def __init__(self, url: str | Engine) -> None:
        if isinstance(url, Engine):
            self._engine, self._own = url, False
        else:
            self._engine, self._own = sa.create_engine(url, **_engine_kwargs(url)), True
        self._ensure_table()

    def _ensure_table(self) -> None:
        try:
            _metadata.create_all(self._engine, checkfirst=True)
        except sa.exc.DatabaseError:
            # Two processes created it at the same moment: fine if it exists now.
            if not sa.inspect(self._engine).has_table(TABLE_NAME):
                raise

    def close(self) -> None:
        """Release the database connections if this object opened them."""
        if self._own:
            self._engine.dispose()

    def __enter__(self) -> MirrorState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, study_name: str, trial_number: int) -> MirrorRecord | None:
        """The mirror record of one trial (or STUDY_ROW), None when it never went up."""
        query = sa.select(_table).where(
            _table.c.study_name == study_name, _table.c.trial_number == trial_number
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return MirrorRecord(**row) if row else None

    def all(self, study_name: str) -> dict[int, MirrorRecord]:
        """Every mirrored trial of the study by number (the study row excluded)."""
        query = sa.select(_table).where(
            _table.c.study_name == study_name, _table.c.trial_number != STUDY_ROW
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {r["trial_number"]: MirrorRecord(**r) for r in rows}

    def study_salt(self, study_name: str) -> str:
        """The study's run-id salt: created once, then the same on every machine."""
        found = self.get(study_name, STUDY_ROW)
        if found:
            return found.run_id
        salt = secrets.token_hex(3)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(_table).values(
                        study_name=study_name,
                        trial_number=STUDY_ROW,
                        run_id=salt,
                        run_path="",
                        content_hash="",
                        mode="",
                        host="",
                        mirrored_at=None,
                    )
                )
        except sa.exc.IntegrityError:  # another process won the race: use its salt
            pass
        found = self.get(study_name, STUDY_ROW)
        if found is None:  # written above or by the winner of the race: cannot vanish
            raise RuntimeError(f"{TABLE_NAME}: the salt row of study {study_name!r} disappeared")
        return found.run_id

    def record(
        self,
        study_name: str,
        trial_number: int,
        *,
        run_path: str,
        content_hash: str,
        mode: str,
        run_dir: str | None,
        host: str,
        run_id: str | None = None,
    ) -> None:
        """Upsert the row after a successful upload (the study row keeps its salt as run_id)."""
        values = {
            "run_path": run_path,
            "content_hash": content_hash,
            "mode": mode,
            "run_dir": run_dir,
            "host": host,
            "mirrored_at": datetime.now(UTC).replace(tzinfo=None),
        }
        key = (_table.c.study_name == study_name) & (_table.c.trial_number == trial_number)
        with self._engine.begin() as conn:
            updated = conn.execute(sa.update(_table).where(key).values(**values)).rowcount
            if not updated:
                conn.execute(
                    sa.insert(_table).values(
                        study_name=study_name,
                        trial_number=trial_number,
                        run_id=run_id or "",
                        **values,
                    )
                )

    def forget(self, study_name: str) -> int:
        """Drop the study's trial rows (not its salt): the next pass re-mirrors everything."""
        query = sa.delete(_table).where(
            _table.c.study_name == study_name, _table.c.trial_number != STUDY_ROW
        )
        with self._engine.begin() as conn:
            return conn.execute(query).rowcount
