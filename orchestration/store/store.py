"""The state store: each method is one unit of work; only plain records go in and come out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from orchestration.core.errors import NotFoundError, OrchestrationError, StoreError
from orchestration.core.lifecycle import Move
from orchestration.core.models import (
    BreakerRecord,
    BreakpointRecord,
    DeadLetterRecord,
    DecisionRecord,
    EventRecord,
    InterventionRecord,
    QualityRecord,
    RunRecord,
    RunSetting,
    TaskRecord,
    TaskSpec,
    TransitionRecord,
)
from orchestration.store import claims, pages, records, schema
from orchestration.store.db import (
    create_store_engine,
    file_identity,
    masked_url,
    reader,
    sqlite_file,
    upgrade_schema,
)

if TYPE_CHECKING:
    from orchestration.store.triggers import TriggerStore

logger = logging.getLogger(__name__)

RUNS = schema.Run
RUN_PLANS = schema.RunPlan
TASKS = schema.Task
TRANSITIONS = schema.Transition
BREAKPOINTS = schema.Breakpoint
DECISIONS = schema.Decision
QUALITY = schema.QualityResult
EVENTS = schema.Event
SETTINGS = schema.RunSettingRow
BREAKERS = schema.CircuitBreaker
DEAD_LETTERS = schema.DeadLetter
INTERVENTIONS = schema.Intervention
# The tables holding a run's rows, children first: how `prune_run` deletes a run.
RUN_TABLES = (
    TRANSITIONS,
    EVENTS,
    DECISIONS,
    QUALITY,
    BREAKPOINTS,
    SETTINGS,
    DEAD_LETTERS,
    INTERVENTIONS,
    TASKS,
    RUN_PLANS,
)
CREATE_SLICE = 5_000  # task rows built and inserted at a time when a run is stored
BREAKER_RETRIES = 5  # read-modify-write attempts of one breaker before giving up

FINAL_RUN_STATES = frozenset({"completed", "failed", "cancelled"})
UPDATABLE_TASK_FIELDS = frozenset(
    {
        "attempts",
        "outcome",
        "next_attempt_at",
        "feedback",
        "answer",
        "last_error_kind",
        "priority",
        "spec",
    }
)

# A task's spec comes back as JSON text: pydantic-core parses and validates it in one pass.
_TASK_COLUMNS = [
    sql_cast(TASKS.c.spec, Text).label("spec") if column.name == "spec" else column
    for column in TASKS.c
]

# A run's row with its plan: the plan lives in a table of its own because SQLite rewrites a
# whole row on update, and the run's row is updated by every heartbeat.
_RUNS_WITH_PLANS = select(RUNS, RUN_PLANS.c.plan_json).outerjoin(
    RUN_PLANS, RUN_PLANS.c.run_id == RUNS.c.id
)
# Built once so SQLAlchemy's compiled cache serves every commit.
_MOVE = (
    update(TASKS)
    .where(
        TASKS.c.run_id == bindparam("m_run"),
        TASKS.c.task_id == bindparam("m_task"),
        TASKS.c.state == bindparam("m_source"),
    )
    .values(state=bindparam("m_dest"), updated_at=bindparam("m_at"))
)
# The same move, made only while `m_owner` holds the run: on SQLite, where BEGIN IMMEDIATE holds
# the write lock from the transaction's start, this is the holder's check of its claim without
# a statement of its own (one of the few a step's commit is made of). PostgreSQL keeps the
# separate read FOR SHARE, which makes a takeover wait for the commit.
_OWNED_MOVE = _MOVE.where(
    exists().where(RUNS.c.id == bindparam("m_run"), RUNS.c.owner == bindparam("m_owner"))
)
_INSERT = {
    table.name: insert(table)
    for table in (
        RUNS,
        RUN_PLANS,
        TASKS,
        TRANSITIONS,
        BREAKPOINTS,
        DECISIONS,
        QUALITY,
        EVENTS,
        SETTINGS,
        INTERVENTIONS,
    )
}
_RESOLVE = (
    update(BREAKPOINTS)
    .where(
        BREAKPOINTS.c.id == bindparam("b_id"),
        BREAKPOINTS.c.run_id == bindparam("b_run"),
        BREAKPOINTS.c.state == "open",
    )
    .values(
        state="resolved",
        resolution=bindparam("b_resolution"),
        note=bindparam("b_note"),
        resolved_by=bindparam("b_actor"),
        resolved_at=bindparam("b_at"),
        params=bindparam("b_params"),
    )
)


class StoreConflict(StoreError):
    """A write lost a race: a move's source state, or a breakpoint's, did not match the store."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message, task=task_id)
        self.task_id = task_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class BreakerUpdate:
    """A change to one circuit breaker, computed inside the transaction from its locked row.

    `change` gets the stored record (None: no row yet) and returns the new one, or None to leave
    it as it is; it must be a pure function (it may run more than once on a lost race).
    """

    key: str
    change: Callable[[BreakerRecord | None], BreakerRecord | None]


class _MovesRejected(Exception):
    """Internal: the moves' row count did not match; the transaction is rolled back."""


@dataclass
class Batch:
    """One unit of work, committed in one transaction: all of it or nothing."""

    moves: list[Move] = field(default_factory=list)
    # (task_id, {field: value}) with fields of TaskRecord in UPDATABLE_TASK_FIELDS
    task_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    new_tasks: list[TaskRecord] = field(default_factory=list)
    breakpoints: list[BreakpointRecord] = field(default_factory=list)  # ids assigned on insert
    # (breakpoint_id, resolution, note, actor, at[, params]): the breakpoint becomes 'resolved'
    resolutions: list[tuple[Any, ...]] = field(default_factory=list)
    settings: list[RunSetting] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    quality: list[QualityRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    run_state: str | None = None  # also sets updated_at, and finished_at for final states
    # inserted unless the same failure (run, task, transition id) is already captured
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    # (dead_letter_id, expected state, {field: value}): StoreConflict if the state differs
    dead_letter_updates: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    interventions: list[InterventionRecord] = field(default_factory=list)  # ids set on insert
    # (intervention_id, new state, note, at): only a `requested` one changes, else StoreConflict
    intervention_updates: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    breaker_updates: list[BreakerUpdate] = field(default_factory=list)

    def __bool__(self) -> bool:
        lists = (self.moves, self.task_updates, self.new_tasks, self.breakpoints)
        more = (self.resolutions, self.decisions, self.quality, self.events, self.settings)
        resilience = (
            self.dead_letters,
            self.dead_letter_updates,
            self.interventions,
            self.intervention_updates,
            self.breaker_updates,
        )
        return any(lists) or any(more) or any(resilience) or self.run_state is not None


class Store:
    """Runs, tasks and their history in SQLite or PostgreSQL, through one held engine."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self._engine = engine
        self._reader = reader(engine)
        # A SQLite file deleted or replaced under a running engine would take the engine's
        # writes into an unlinked inode: remember which file was opened, check before writing.
        self._file = sqlite_file(url)
        self._identity = file_identity(self._file) if self._file is not None else None

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to `url`, creating the SQLite file and upgrading the schema as needed."""
        try:
            engine = create_store_engine(url)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise StoreError(f"cannot open the store at {masked_url(url)}: {exc}") from exc
        try:
            upgrade_schema(engine)
        except StoreError:
            engine.dispose()
            raise
        except Exception as exc:
            engine.dispose()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"cannot open the store at {masked_url(url)}: {reason}") from exc
        return cls(url, engine)

    def workers(self) -> list[Any]:
        """The worker processes recorded (`orch worker`), with their figures (WorkerFigures)."""
        from orchestration.store.work_queue import WorkQueue

        try:
            return WorkQueue(self._engine).workers()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the workers: {_first_line(exc)}") from exc

    def check_file(self) -> None:
        """Raise StoreError if the SQLite file opened is gone or another file took its place."""
        if self._file is None or self._identity is None:
            return
        now = file_identity(self._file)
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        raise StoreError(
            f"the store's database file {self._file} was {what} while this engine used it: "
            "nothing more can be recorded, so the run stops here. What it recorded after that "
            "moment is lost; restore the file from a backup to see the run's history"
        )

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return masked_url(self.url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @property
    def triggers(self) -> TriggerStore:
        """Schedules, their firings and trigger events (orchestration/store/triggers.py)."""
        from orchestration.store.triggers import TriggerStore

        return TriggerStore(self._engine, self._reader)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- runs and tasks ------------------------------------------------------------------

    def create_run(self, run: RunRecord, tasks: list[TaskRecord]) -> None:
        """Store a new run and its tasks in one transaction."""
        try:
            with self._engine.begin() as conn:
                conn.execute(_INSERT[RUNS.name], [records.run_row(run)])
                conn.execute(_INSERT[RUN_PLANS.name], [records.run_plan_row(run)])
                # in slices, one transaction: a 100,000-task run never holds every row at once
                for first in range(0, len(tasks), CREATE_SLICE):
                    rows = [
                        records.task_row(t, seq, run.updated_at)
                        for seq, t in enumerate(tasks[first : first + CREATE_SLICE], first)
                    ]
                    _execute_many(conn, _INSERT[TASKS.name], rows)
        except IntegrityError as exc:
            if self._run_exists(run.id):
                raise StoreError(f"run '{run.id}' already exists") from exc
            raise StoreError(f"cannot store run '{run.id}': {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store run '{run.id}': {_first_line(exc)}") from exc

    def get_run(self, run_id: str) -> RunRecord:
        row = self._one(_RUNS_WITH_PLANS.where(RUNS.c.id == run_id))
        if row is None:
            raise NotFoundError(f"run '{run_id}' not found")
        return records.run_record(row)

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        query = _RUNS_WITH_PLANS.order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc())
        return [records.run_record(row) for row in self._all(query)]

    def running_run_ids(self) -> list[str]:
        """The ids of the runs stored as `running` (an engine works on them, or one died)."""
        query = select(RUNS.c.id).where(RUNS.c.state == "running").order_by(RUNS.c.id)
        return [row.id for row in self._all(query)]

    def run_ids_of_plan(self, plan_name: str) -> list[str]:
        """The ids of the plan's runs, oldest first: without reading (parsing) each plan's JSON."""
        query = (
            select(RUNS.c.id)
            .where(RUNS.c.plan_name == plan_name)
            .order_by(RUNS.c.created_at, RUNS.c.id)
        )
        return [row.id for row in self._all(query)]

    def latest_run(self) -> RunRecord | None:
        query = _RUNS_WITH_PLANS.order_by(RUNS.c.created_at.desc(), RUNS.c.id.desc()).limit(1)
        row = self._one(query)
        return records.run_record(row) if row is not None else None

    def tasks(self, run_id: str) -> list[TaskRecord]:
        """The run's tasks in the order they were added."""
        query = select(*_TASK_COLUMNS).where(TASKS.c.run_id == run_id).order_by(TASKS.c.seq)
        return self._task_records(query)

    def task_count(self, run_id: str, state: str | None = None) -> int:
        """How many tasks the run has (in `state`, if given); cheap: a running engine polls it."""
        return int(self._one(pages.task_count(run_id, state))[0])  # type: ignore[index]

    def tasks_page(
        self, run_id: str, offset: int, limit: int, state: str | None = None
    ) -> list[TaskRecord]:
        """At most `limit` of the run's tasks (in `state`, if given) from `offset`, run order."""
        query = pages.tasks_page(_TASK_COLUMNS, run_id, offset, limit, state)
        return self._task_records(query)

    def tasks_by_id(self, run_id: str, task_ids: Sequence[str]) -> list[TaskRecord]:
        """These tasks of the run (those that exist), in run order."""
        if not task_ids:
            return []
        query = pages.tasks_by_id(_TASK_COLUMNS, run_id, list(task_ids))
        return self._task_records(query)

    def task(self, run_id: str, task_id: str) -> TaskRecord:
        query = select(TASKS).where(TASKS.c.run_id == run_id, TASKS.c.task_id == task_id)
        row = self._one(query)
        if row is None:
            raise NotFoundError(f"task '{task_id}' not found in run '{run_id}'")
        return records.task_record(row)

    # ---- the one write path of a running engine ----------------------------------------------

    def claim_run(
        self,
        run_id: str,
        owner: str,
        *,
        stale_before: datetime,
        force: bool = False,
        holder_gone: str | None = None,
        engine: tuple[str, int, float] | None = None,
    ) -> bool:
        """Take the run for the engine `owner` in one conditional UPDATE; True if it took it.

        False: another engine holds it (its heartbeat is newer than `stale_before`, and it is
        not `holder_gone`, an engine the caller knows to be dead). `engine`: the claiming
        process (host, pid, start time), recorded in the same UPDATE.
        """
        try:
            with self._engine.begin() as conn:
                taken = claims.claim(
                    conn,
                    run_id,
                    owner,
                    datetime.now(UTC),
                    stale_before=stale_before,
                    force=force,
                    holder_gone=holder_gone,
                    engine=engine,
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot claim run '{run_id}': {_first_line(exc)}") from exc
        if not taken and not self._run_exists(run_id):
            raise NotFoundError(f"run '{run_id}' not found")
        return taken

    def release_run(self, run_id: str, owner: str) -> None:
        """Give up the claim of `owner` on the run (an engine that could not start on it)."""
        try:
            with self._engine.begin() as conn:
                claims.release(conn, run_id, owner)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot release run '{run_id}': {_first_line(exc)}") from exc

    def commit(self, run_id: str, batch: Batch, *, owner: str | None = None) -> list[int]:
        """Apply the whole batch in one transaction; return the new breakpoints' ids in order.

        A move whose source state does not match the stored state rolls everything back and
        raises StoreConflict naming the task, the expected and the actual state. With `owner`
        (the engine holding the run), nothing is stored and ClaimLost is raised if another
        engine took the run over.
        """
        if not batch:
            return []
        self.check_file()
        now = datetime.now(UTC)
        try:
            with self._engine.begin() as conn:
                checked_by_moves = bool(batch.moves) and conn.dialect.name == "sqlite"
                if owner is not None and not checked_by_moves:
                    claims.check_owner(conn, run_id, owner)
                return _apply(conn, run_id, batch, now, owner if checked_by_moves else None)
        except _MovesRejected:
            raise self._move_conflict(run_id, batch.moves) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot commit to run '{run_id}': {_first_line(exc)}") from exc

    def _move_conflict(self, run_id: str, moves: Sequence[Move]) -> StoreConflict:
        """Replay the moves on the stored states to find the first that cannot apply."""
        task_ids = sorted({m.task_id for m in moves})
        query = select(TASKS.c.task_id, TASKS.c.state).where(
            TASKS.c.run_id == run_id, TASKS.c.task_id.in_(task_ids)
        )
        states: dict[str, str] = {row.task_id: row.state for row in self._all(query)}
        for move in moves:
            actual = states.get(move.task_id, "<missing>")
            if actual != move.source:
                break
            states[move.task_id] = move.dest
        else:  # another writer changed and restored the state between our two transactions
            move, actual = moves[0], "<changed concurrently>"
        return StoreConflict(
            f"cannot move from '{move.source}' to '{move.dest}' ('{move.trigger}'): the store "
            f"has state '{actual}' in run '{run_id}'",
            task_id=move.task_id,
            expected=move.source,
            actual=actual,
        )

    # ---- history and records ---------------------------------------------------------------

    def transitions(
        self, run_id: str, task_id: str | None = None, after_id: int = 0
    ) -> list[TransitionRecord]:
        """Stored moves ordered by id; `after_id` returns only newer ones (for polling)."""
        query = select(TRANSITIONS).where(
            TRANSITIONS.c.run_id == run_id, TRANSITIONS.c.id > after_id
        )
        if task_id is not None:
            query = query.where(TRANSITIONS.c.task_id == task_id)
        return [
            records.transition_record(row) for row in self._all(query.order_by(TRANSITIONS.c.id))
        ]

    def last_transition_id(self, run_id: str) -> int:
        query = select(func.max(TRANSITIONS.c.id)).where(TRANSITIONS.c.run_id == run_id)
        with self._reader.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def breakpoints(
        self, run_id: str | None = None, state: str | None = None
    ) -> list[BreakpointRecord]:
        conditions = []
        if run_id is not None:
            conditions.append(BREAKPOINTS.c.run_id == run_id)
        if state is not None:
            conditions.append(BREAKPOINTS.c.state == state)
        query = select(BREAKPOINTS).where(and_(True, *conditions)).order_by(BREAKPOINTS.c.id)
        return [records.breakpoint_record(row) for row in self._all(query)]

    def breakpoint(self, breakpoint_id: int) -> BreakpointRecord:
        row = self._one(select(BREAKPOINTS).where(BREAKPOINTS.c.id == breakpoint_id))
        if row is None:
            raise NotFoundError(f"breakpoint {breakpoint_id} not found")
        return records.breakpoint_record(row)

    def decisions(self, run_id: str, task_id: str | None = None) -> list[DecisionRecord]:
        query = _for_task(select(DECISIONS), DECISIONS, run_id, task_id)
        return [records.decision_record(row) for row in self._all(query)]

    def gate_results(self, run_id: str) -> list[bool]:
        """Whether each stored attempt passed its quality gate, oldest first."""
        query = select(QUALITY.c.gate_passed).where(QUALITY.c.run_id == run_id)
        return [bool(row.gate_passed) for row in self._all(query.order_by(QUALITY.c.id))]

    def quality(self, run_id: str, task_id: str | None = None) -> list[QualityRecord]:
        query = _for_task(select(QUALITY), QUALITY, run_id, task_id)
        return [records.quality_record(row) for row in self._all(query)]

    def events(
        self, run_id: str, after_id: int = 0, kinds: Iterable[str] | None = None
    ) -> list[EventRecord]:
        """The run's events, oldest first; `kinds` keeps only those kinds."""
        query = select(EVENTS).where(EVENTS.c.run_id == run_id, EVENTS.c.id > after_id)
        if kinds is not None:
            query = query.where(EVENTS.c.kind.in_(list(kinds)))
        return [records.event_record(row) for row in self._all(query.order_by(EVENTS.c.id))]

    def run_settings(self, run_id: str, after_id: int = 0) -> list[RunSetting]:
        """The run's settings log, oldest first (the latest row per kind and name is in force)."""
        query = (
            select(SETTINGS)
            .where(SETTINGS.c.run_id == run_id, SETTINGS.c.id > after_id)
            .order_by(SETTINGS.c.id)
        )
        return [records.setting_record(row) for row in self._all(query)]

    def integrity_ok(self) -> bool:
        """SQLite's own consistency check of the file; PostgreSQL looks after itself."""
        if self.dialect != "sqlite":
            return True
        with self._reader.connect() as conn:
            results = [row[0] for row in conn.execute(text("PRAGMA integrity_check"))]
        return results == ["ok"]

    def task_events(
        self, run_id: str, task_id: str, kinds: Iterable[str] | None = None
    ) -> list[EventRecord]:
        """One task's events, oldest first; `kinds` keeps only those kinds."""
        query = select(EVENTS).where(EVENTS.c.run_id == run_id, EVENTS.c.task_id == task_id)
        if kinds is not None:
            query = query.where(EVENTS.c.kind.in_(list(kinds)))
        return [records.event_record(row) for row in self._all(query.order_by(EVENTS.c.id))]

    # ---- pages and counts for readers that poll (the dashboard) ------------------------------

    def events_page(self, run_id: str, after_id: int, limit: int) -> list[EventRecord]:
        """Like `events`, but at most `limit` of them (the oldest first): one poll's page."""
        query = (
            select(EVENTS)
            .where(EVENTS.c.run_id == run_id, EVENTS.c.id > after_id)
            .order_by(EVENTS.c.id)
            .limit(limit)
        )
        return [records.event_record(row) for row in self._all(query)]

    def transitions_page(self, run_id: str, after_id: int, limit: int) -> list[TransitionRecord]:
        """Like `transitions`, but at most `limit` of them (the oldest first)."""
        query = (
            select(TRANSITIONS)
            .where(TRANSITIONS.c.run_id == run_id, TRANSITIONS.c.id > after_id)
            .order_by(TRANSITIONS.c.id)
            .limit(limit)
        )
        return [records.transition_record(row) for row in self._all(query)]

    def recent_events(self, run_id: str, limit: int) -> list[EventRecord]:
        """The run's `limit` newest events, newest first."""
        query = (
            select(EVENTS)
            .where(EVENTS.c.run_id == run_id)
            .order_by(EVENTS.c.id.desc())
            .limit(limit)
        )
        return [records.event_record(row) for row in self._all(query)]

    def transitions_of_tasks(self, run_id: str, task_ids: Sequence[str]) -> list[TransitionRecord]:
        """The moves of these tasks (one page's), oldest first."""
        if not task_ids:
            return []
        rows = self._all(pages.transitions_of(run_id, list(task_ids)))
        return [records.transition_record(row) for row in rows]

    def recent_transitions(self, run_id: str, limit: int) -> list[TransitionRecord]:
        """The run's `limit` newest moves, newest first."""
        rows = self._all(pages.recent_transitions(run_id, limit))
        return [records.transition_record(row) for row in rows]

    def step_events_of_tasks(self, run_id: str, task_ids: Sequence[str]) -> list[EventRecord]:
        """The `step` events of these tasks (one page's), oldest first."""
        if not task_ids:
            return []
        return [records.event_record(row) for row in self._all(pages.steps_of(run_id, task_ids))]

    def run_totals(self, run_id: str) -> pages.RunTotals:
        """Attempts started, and cost and tokens reported, by all the run's tasks: summed by
        the database (one indexed aggregate per figure, no rows read back)."""
        with self._reader.connect() as conn:
            attempts = conn.execute(pages.attempts_total(run_id)).scalar()
            cost, tokens = conn.execute(pages.step_totals(run_id, self.dialect)).one()
        return pages.RunTotals(int(attempts or 0), float(cost or 0), int(tokens or 0))

    def last_event_id(self, run_id: str) -> int:
        """The id of the run's newest event (0 without any): where a live reader starts."""
        query = select(func.max(EVENTS.c.id)).where(EVENTS.c.run_id == run_id)
        with self._reader.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def task_state_counts(self, run_id: str | None = None) -> dict[str, dict[str, int]]:
        """For every run (or only `run_id`), how many of its tasks are in each state: one query."""
        query = select(TASKS.c.run_id, TASKS.c.state, func.count().label("tasks")).group_by(
            TASKS.c.run_id, TASKS.c.state
        )
        if run_id is not None:
            query = query.where(TASKS.c.run_id == run_id)
        counts: dict[str, dict[str, int]] = {}
        for row in self._all(query):
            counts.setdefault(row.run_id, {})[row.state] = int(row.tasks)
        return counts

    def journal(
        self, kind: str, after_id: int, limit: int, run_id: str | None = None
    ) -> list[tuple[int, Any]]:
        """(row id, record) of one journal table, store-wide or one run's, with ids above
        `after_id`, oldest first, at most `limit`: what the JSONL event log follows.

        `kind`: transition | decision | breakpoint | event. Ids grow across runs, so one
        cursor per kind follows the whole store.
        """
        table, convert = _JOURNALS[kind]
        query = select(table).where(table.c.id > after_id)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        rows = self._all(query.order_by(table.c.id).limit(limit))
        return [(int(row.id), convert(row)) for row in rows]

    # ---- circuit breakers (store-wide, not owned by a run) -------------------------------------

    def breakers(self) -> list[BreakerRecord]:
        """Every circuit breaker, by key."""
        query = select(BREAKERS).order_by(BREAKERS.c.key)
        return [records.breaker_record(row) for row in self._all(query)]

    def breaker(self, key: str) -> BreakerRecord | None:
        row = self._one(select(BREAKERS).where(BREAKERS.c.key == key))
        return records.breaker_record(row) if row is not None else None

    def update_breaker(
        self, key: str, change: Callable[[BreakerRecord | None], BreakerRecord | None]
    ) -> BreakerRecord | None:
        """Apply `change` to the breaker's row atomically (one short transaction); the result."""
        try:
            with self._engine.begin() as conn:
                return _apply_breaker_update(conn, BreakerUpdate(key, change), datetime.now(UTC))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot update circuit breaker '{key}': {_first_line(exc)}") from exc

    def commit_store_wide(
        self,
        interventions: Sequence[InterventionRecord] = (),
        breaker_updates: Sequence[BreakerUpdate] = (),
    ) -> None:
        """Store-wide changes (no run): breaker updates and the interventions that made them."""
        now = datetime.now(UTC)
        try:
            with self._engine.begin() as conn:
                for change in sorted(breaker_updates, key=lambda u: u.key):
                    _apply_breaker_update(conn, change, now)
                _insert_interventions(conn, None, list(interventions))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the change: {_first_line(exc)}") from exc

    # ---- dead letters ------------------------------------------------------------------------

    def dead_letters(
        self, run_id: str | None = None, task_id: str | None = None, state: str | None = None
    ) -> list[DeadLetterRecord]:
        """Captured failures, oldest first, optionally of one run, task or state."""
        query = select(DEAD_LETTERS)
        if run_id is not None:
            query = query.where(DEAD_LETTERS.c.run_id == run_id)
        if task_id is not None:
            query = query.where(DEAD_LETTERS.c.task_id == task_id)
        if state is not None:
            query = query.where(DEAD_LETTERS.c.state == state)
        rows = self._all(query.order_by(DEAD_LETTERS.c.id))
        return [records.dead_letter_record(row) for row in rows]

    def dead_letter(self, dead_letter_id: int) -> DeadLetterRecord:
        row = self._one(select(DEAD_LETTERS).where(DEAD_LETTERS.c.id == dead_letter_id))
        if row is None:
            raise NotFoundError(f"dead letter {dead_letter_id} not found")
        return records.dead_letter_record(row)

    def delete_dead_letters(self, ids: Sequence[int]) -> int:
        """Delete these dead letters; how many were deleted."""
        if not ids:
            return 0
        try:
            with self._engine.begin() as conn:
                statement = delete(DEAD_LETTERS).where(DEAD_LETTERS.c.id.in_(list(ids)))
                return int(conn.execute(statement).rowcount)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot delete dead letters: {_first_line(exc)}") from exc

    # ---- interventions -----------------------------------------------------------------------

    def interventions(
        self,
        run_id: str | None = None,
        *,
        task_id: str | None = None,
        state: str | None = None,
        store_wide: bool = False,
    ) -> list[InterventionRecord]:
        """Interventions oldest first: of a run (and task, state), or `store_wide` ones."""
        query = select(INTERVENTIONS)
        if store_wide:
            query = query.where(INTERVENTIONS.c.run_id.is_(None))
        elif run_id is not None:
            query = query.where(INTERVENTIONS.c.run_id == run_id)
        if task_id is not None:
            query = query.where(INTERVENTIONS.c.task_id == task_id)
        if state is not None:
            query = query.where(INTERVENTIONS.c.state == state)
        rows = self._all(query.order_by(INTERVENTIONS.c.id))
        return [records.intervention_record(row) for row in rows]

    def intervention(self, intervention_id: int) -> InterventionRecord:
        row = self._one(select(INTERVENTIONS).where(INTERVENTIONS.c.id == intervention_id))
        if row is None:
            raise NotFoundError(f"intervention {intervention_id} not found")
        return records.intervention_record(row)

    # ---- retention ---------------------------------------------------------------------------

    def run_row_counts(self, run_id: str) -> dict[str, int]:
        """How many rows the run has in each table (the run's own row included)."""
        with self._reader.connect() as conn:
            counts = _row_counts(conn, run_id)
        counts[RUNS.name] = 1 if self._run_exists(run_id) else 0
        return counts

    def prune_run(self, run_id: str, finished_before: datetime) -> dict[str, int] | None:
        """Delete a finished run and all its rows in one transaction; rows deleted per table.

        Only a run whose state is final (completed, failed, cancelled) and that finished before
        `finished_before` is deleted; otherwise (it was resumed meanwhile, it is running or
        paused) nothing changes and the result is None.
        """
        try:
            with self._engine.begin() as conn:
                query = select(RUNS.c.state, RUNS.c.finished_at).where(RUNS.c.id == run_id)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()  # a resume waits until we are done
                row = conn.execute(query).first()
                if (
                    row is None
                    or row.state not in FINAL_RUN_STATES
                    or row.finished_at is None
                    or row.finished_at >= finished_before
                ):
                    return None
                deleted = {
                    table.name: int(
                        conn.execute(delete(table).where(table.c.run_id == run_id)).rowcount
                    )
                    for table in RUN_TABLES
                }
                deleted[RUNS.name] = int(
                    conn.execute(delete(RUNS).where(RUNS.c.id == run_id)).rowcount
                )
                return deleted
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune run '{run_id}': {_first_line(exc)}") from exc

    # ---- reading helpers ---------------------------------------------------------------------

    def _task_records(self, query: Select[Any]) -> list[TaskRecord]:
        """The tasks `query` selects, each row read as it comes (a run's rows are not all held
        at once: their specs' JSON is about 1 KB per task), equal actions sharing one model."""
        shared: dict[Any, Any] = {}
        with self._reader.connect() as conn:
            return [records.task_record(row, shared) for row in conn.execute(query)]

    def _all(self, query: Select[Any]) -> list[Row[Any]]:
        with self._reader.connect() as conn:
            return list(conn.execute(query))

    def _one(self, query: Select[Any]) -> Row[Any] | None:
        with self._reader.connect() as conn:
            return conn.execute(query).first()

    def _run_exists(self, run_id: str) -> bool:
        return self._one(select(RUNS.c.id).where(RUNS.c.id == run_id)) is not None


# ---- applying a batch (inside one transaction) --------------------------------------------------


def _apply(
    conn: Connection, run_id: str, batch: Batch, now: datetime, owner: str | None = None
) -> list[int]:
    """Apply the batch; `owner`: its moves are made only while that engine holds the run."""
    if batch.new_tasks:
        _insert_tasks(conn, run_id, batch.new_tasks, now)
    if batch.moves:
        _apply_moves(conn, run_id, batch.moves, now, owner)
    _update_tasks(conn, run_id, _merged_updates(batch.task_updates), now)
    ids = [_insert_breakpoint(conn, run_id, bp) for bp in batch.breakpoints]
    if batch.resolutions:
        _resolve_breakpoints(conn, run_id, batch.resolutions)
    _insert_rows(conn, DECISIONS, [records.decision_row(run_id, d) for d in batch.decisions])
    _insert_rows(conn, QUALITY, [records.quality_row(run_id, q) for q in batch.quality])
    _insert_rows(conn, EVENTS, [records.event_row(run_id, e) for e in batch.events])
    _insert_rows(conn, SETTINGS, [records.setting_row(run_id, s) for s in batch.settings])
    if batch.dead_letters:
        rows = [records.dead_letter_row(d) for d in batch.dead_letters]
        for row in rows:
            if row["run_id"] != run_id:
                raise StoreError(f"dead letter belongs to run '{row['run_id']}', not '{run_id}'")
        conn.execute(_insert_ignoring_duplicates(conn, DEAD_LETTERS), rows)
    for dead_letter_id, expected, values in batch.dead_letter_updates:
        _update_dead_letter(conn, run_id, dead_letter_id, expected, values)
    _insert_interventions(conn, run_id, batch.interventions)
    for intervention_id, state, note, at in batch.intervention_updates:
        _update_intervention(conn, run_id, intervention_id, state, note, at)
    for change in sorted(batch.breaker_updates, key=lambda u: u.key):  # one lock order: no deadlock
        _apply_breaker_update(conn, change, now)
    if batch.run_state is not None:
        _set_run_state(conn, run_id, batch.run_state, now)
    return ids


def _insert_ignoring_duplicates(conn: Connection, table: Table) -> Any:
    """INSERT that skips rows whose unique key is taken (another writer got there first)."""
    # Imported here: each dialect's module is loaded only by a store that uses it.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()


def _update_dead_letter(
    conn: Connection, run_id: str, dead_letter_id: int, expected: str, values: dict[str, Any]
) -> None:
    statement = (
        update(DEAD_LETTERS)
        .where(
            DEAD_LETTERS.c.id == dead_letter_id,
            DEAD_LETTERS.c.run_id == run_id,
            DEAD_LETTERS.c.state == expected,
        )
        .values(**values)
    )
    if conn.execute(statement).rowcount == 1:
        return
    query = select(DEAD_LETTERS.c.state).where(
        DEAD_LETTERS.c.id == dead_letter_id, DEAD_LETTERS.c.run_id == run_id
    )
    actual = conn.execute(query).scalar()
    if actual is None:
        raise NotFoundError(f"dead letter {dead_letter_id} not found in run '{run_id}'")
    raise StoreConflict(
        f"dead letter {dead_letter_id} is already {actual}", expected=expected, actual=actual
    )


def _insert_interventions(
    conn: Connection, run_id: str | None, interventions: list[InterventionRecord]
) -> None:
    for intervention in interventions:
        if intervention.run_id != run_id:
            raise StoreError(f"intervention belongs to run '{intervention.run_id}', not '{run_id}'")
        result = conn.execute(_INSERT[INTERVENTIONS.name], [records.intervention_row(intervention)])
        key = result.inserted_primary_key
        assert key is not None  # a single-row INSERT always reports its key
        intervention.id = int(key[0])


def _update_intervention(
    conn: Connection, run_id: str, intervention_id: int, state: str, note: str, at: datetime
) -> None:
    statement = (
        update(INTERVENTIONS)
        .where(
            INTERVENTIONS.c.id == intervention_id,
            INTERVENTIONS.c.run_id == run_id,
            INTERVENTIONS.c.state == "requested",
        )
        .values(state=state, note=note, applied_at=at)
    )
    if conn.execute(statement).rowcount == 1:
        return
    query = select(INTERVENTIONS.c.state).where(
        INTERVENTIONS.c.id == intervention_id, INTERVENTIONS.c.run_id == run_id
    )
    actual = conn.execute(query).scalar()
    if actual is None:
        raise NotFoundError(f"intervention {intervention_id} not found in run '{run_id}'")
    raise StoreConflict(
        f"intervention {intervention_id} is already {actual}", expected="requested", actual=actual
    )


def _apply_breaker_update(
    conn: Connection, change: BreakerUpdate, now: datetime
) -> BreakerRecord | None:
    """Read the breaker's row locked, apply `change`, write it back compare-and-swap."""
    query = select(BREAKERS).where(BREAKERS.c.key == change.key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # SQLite's BEGIN IMMEDIATE already holds the write lock
    for _ in range(BREAKER_RETRIES):
        row = conn.execute(query).first()
        current = records.breaker_record(row) if row is not None else None
        changed = change.change(current)
        if changed is None:
            return current
        changed.version = (current.version if current is not None else 0) + 1
        changed.updated_at = now
        values = records.breaker_row(changed, now)
        if current is None:
            # RETURNING tells whether the row went in: an ignored conflict's row count is -1 on
            # PostgreSQL
            statement = _insert_ignoring_duplicates(conn, BREAKERS).returning(BREAKERS.c.key)
            written = conn.execute(statement, values).first() is not None
        else:
            written = (
                conn.execute(
                    update(BREAKERS)
                    .where(BREAKERS.c.key == change.key, BREAKERS.c.version == current.version)
                    .values(**values)
                ).rowcount
                == 1
            )
        if written:
            return changed
    raise StoreConflict(f"circuit breaker '{change.key}' kept changing under this update")


def _row_counts(conn: Connection, run_id: str) -> dict[str, int]:
    return {
        table.name: int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.run_id == run_id)
            ).scalar()
            or 0
        )
        for table in RUN_TABLES
    }


def _insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        _execute_many(conn, _INSERT[table.name], rows)


def _execute_many(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> int:
    """`conn.execute(statement, rows).rowcount`: one executemany for rows with the same keys.

    SQLite counts the rows every statement of an executemany changed; the callers compare
    that with the number of rows they sent.
    """
    return int(conn.execute(statement, rows if len(rows) > 1 else rows[0]).rowcount)


def _insert_tasks(conn: Connection, run_id: str, tasks: list[TaskRecord], now: datetime) -> None:
    last = conn.execute(select(func.max(TASKS.c.seq)).where(TASKS.c.run_id == run_id)).scalar()
    start = -1 if last is None else int(last)
    for task in tasks:
        if task.run_id != run_id:
            raise StoreError(f"new task belongs to run '{task.run_id}', not '{run_id}'")
    rows = [records.task_row(t, start + 1 + i, now) for i, t in enumerate(tasks)]
    _execute_many(conn, _INSERT[TASKS.name], rows)


def _apply_moves(
    conn: Connection, run_id: str, moves: list[Move], now: datetime, owner: str | None = None
) -> None:
    params = [
        {"m_run": run_id, "m_task": m.task_id, "m_source": m.source, "m_dest": m.dest, "m_at": now}
        for m in moves
    ]
    statement = _MOVE
    if owner is not None:
        statement = _OWNED_MOVE
        for row in params:
            row["m_owner"] = owner
    # executemany runs the updates in order, so one task may move twice in a batch
    if _execute_many(conn, statement, params) != len(moves):
        if owner is not None:
            claims.check_owner(conn, run_id, owner)  # ClaimLost if that is why nothing moved
        raise _MovesRejected()
    history = [
        {
            "run_id": run_id,
            "task_id": m.task_id,
            "source": m.source,
            "dest": m.dest,
            "trigger": m.trigger,
            "reason": m.reason,
            "actor": m.actor,
            "at": now,
        }
        for m in moves
    ]
    _execute_many(conn, _INSERT[TRANSITIONS.name], history)


def _update_tasks(
    conn: Connection, run_id: str, updates: dict[str, dict[str, Any]], now: datetime
) -> None:
    """Apply the tasks' field updates: one executemany (of one statement, see
    `_merged_groups`) whatever fields each task changes."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for task_id, values in updates.items():
        unknown = set(values) - UPDATABLE_TASK_FIELDS
        if unknown:
            allowed = ", ".join(sorted(UPDATABLE_TASK_FIELDS))
            raise StoreError(
                f"cannot update field(s) {', '.join(sorted(unknown))}; allowed: {allowed}",
                task=task_id,
            )
        params = {f"u_{name}": _column_value(value) for name, value in values.items()}
        params.update(u_run=run_id, u_task=task_id, u_updated_at=now)
        groups.setdefault(frozenset(values), []).append(params)
    statements = {fields: _update_statement(fields) for fields in groups}
    if len(groups) > 1:
        statements, groups = _merged_groups(groups)
    for fields, rows in groups.items():
        if _execute_many(conn, statements[fields], rows) != len(rows):
            missing = _missing_tasks(conn, run_id, [row["u_task"] for row in rows])
            raise NotFoundError(f"task '{missing}' not found in run '{run_id}'")


def _column_value(value: Any) -> Any:
    # A task's spec is stored as its JSON form, as on insert.
    return value.model_dump(mode="json") if isinstance(value, TaskSpec) else value


def _missing_tasks(conn: Connection, run_id: str, task_ids: list[str]) -> str:
    query = select(TASKS.c.task_id).where(TASKS.c.run_id == run_id, TASKS.c.task_id.in_(task_ids))
    found = {row.task_id for row in conn.execute(query)}
    return next((t for t in task_ids if t not in found), task_ids[0])


def _merged_updates(updates: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One update per task: later values of a field win, as if applied in order."""
    merged: dict[str, dict[str, Any]] = {}
    for task_id, values in updates:
        merged.setdefault(task_id, {}).update(values)
    return merged


_UPDATES: dict[frozenset[str], Update] = {}


def _update_statement(fields: frozenset[str]) -> Update:
    # Built once per set of fields: constructing a statement costs more than running it.
    statement = _UPDATES.get(fields)
    if statement is None:
        values: dict[str, Any] = {name: bindparam(f"u_{name}") for name in sorted(fields)}
        statement = (
            update(TASKS)
            .where(TASKS.c.run_id == bindparam("u_run"), TASKS.c.task_id == bindparam("u_task"))
            .values(**values, updated_at=bindparam("u_updated_at"))
        )
        _UPDATES[fields] = statement
    return statement


def _merged_groups(
    groups: dict[frozenset[str], list[dict[str, Any]]],
) -> tuple[dict[frozenset[str], Update], dict[frozenset[str], list[dict[str, Any]]]]:
    """The updates of several sets of fields as one statement over all of them, each row saying
    which fields it sets (`s_<field>`) and leaving the others as they are: a step's commit
    updates the concluded task's outcome and the next task's attempts, and a statement of its
    own per set of fields cost as much as the rest of the commit's statements each."""
    union = frozenset().union(*groups)
    rows = []
    for fields, group in groups.items():
        for row in group:
            for name in union:
                row[f"s_{name}"] = name in fields
                row.setdefault(f"u_{name}", None)
            rows.append(row)
    return {union: _flagged_update_statement(union)}, {union: rows}


_FLAGGED_UPDATES: dict[frozenset[str], Update] = {}


def _flagged_update_statement(fields: frozenset[str]) -> Update:
    """UPDATE tasks SET <field> = CASE WHEN :s_<field> THEN :u_<field> ELSE <field> END, ..."""
    statement = _FLAGGED_UPDATES.get(fields)
    if statement is None:
        values: dict[str, Any] = {
            # the column's type on the parameter: its bind processing (JSON, UTC times) applies
            name: case(
                (
                    bindparam(f"s_{name}", type_=Boolean()),
                    bindparam(f"u_{name}", type_=column.type),
                ),
                else_=column,
            )
            for name in sorted(fields)
            for column in (TASKS.c[name],)
        }
        statement = (
            update(TASKS)
            .where(TASKS.c.run_id == bindparam("u_run"), TASKS.c.task_id == bindparam("u_task"))
            .values(**values, updated_at=bindparam("u_updated_at"))
        )
        _FLAGGED_UPDATES[fields] = statement
    return statement


def _insert_breakpoint(conn: Connection, run_id: str, bp: BreakpointRecord) -> int:
    result = conn.execute(_INSERT[BREAKPOINTS.name], [records.breakpoint_row(run_id, bp)])
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    return int(key[0])


def _resolve_breakpoints(conn: Connection, run_id: str, resolutions: list[tuple[Any, ...]]) -> None:
    for breakpoint_id, resolution, note, actor, at, *more in resolutions:
        params = {
            "b_id": breakpoint_id,
            "b_run": run_id,
            "b_resolution": resolution,
            "b_note": note,
            "b_actor": actor,
            "b_at": at,
            "b_params": more[0] if more else {},
        }
        if conn.execute(_RESOLVE, params).rowcount != 1:
            raise _resolution_conflict(conn, run_id, breakpoint_id)


def _resolution_conflict(conn: Connection, run_id: str, breakpoint_id: int) -> OrchestrationError:
    query = select(BREAKPOINTS.c.run_id, BREAKPOINTS.c.state).where(
        BREAKPOINTS.c.id == breakpoint_id
    )
    row = conn.execute(query).first()
    if row is None or row.run_id != run_id:
        return NotFoundError(f"breakpoint {breakpoint_id} not found in run '{run_id}'")
    return StoreConflict(
        f"breakpoint {breakpoint_id} is already {row.state}", expected="open", actual=row.state
    )


def _set_run_state(conn: Connection, run_id: str, state: str, now: datetime) -> None:
    finished = now if state in FINAL_RUN_STATES else None
    values: dict[str, Any] = {"state": state, "updated_at": now, "finished_at": finished}
    if state != "running":
        values["owner"] = None  # a run that stops being worked on is held by no engine
    statement = update(RUNS).where(RUNS.c.id == run_id).values(**values)
    if conn.execute(statement).rowcount != 1:
        raise NotFoundError(f"run '{run_id}' not found")


def _for_task(query: Select[Any], table: Table, run_id: str, task_id: str | None) -> Select[Any]:
    query = query.where(table.c.run_id == run_id)
    if task_id is not None:
        query = query.where(table.c.task_id == task_id)
    return query.order_by(table.c.id)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc)
    return message.splitlines()[0] if message else type(exc).__name__


# The tables the event log follows, and how each row becomes its record.
_JOURNALS: dict[str, tuple[Any, Callable[[Row[Any]], Any]]] = {
    "transition": (TRANSITIONS, records.transition_record),
    "decision": (DECISIONS, records.decision_record),
    "breakpoint": (BREAKPOINTS, records.breakpoint_record),
    "event": (EVENTS, records.event_record),
}
