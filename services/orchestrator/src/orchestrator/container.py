"""The orchestrator's composition root: everything the app runs on, built once from
:class:`~orchestrator.settings.Settings`.

``create_app`` builds one :class:`Container`, passes it to every feature's
``setup(app, container)`` (which only adds routes and middleware) and starts it in the
app's ``cleanup_ctx``; handlers reach it through ``request.app[CONTAINER]``
(``orchestrator.deps``). :meth:`Container.start` opens the clients and builds the
repositories and slice services in dependency order, starting each background loop
as soon as what it needs exists; :meth:`Container.stop` stops them in the reverse
order (so the features that publish stop before the publisher, the engine before the
MongoDB client closes). The attributes exist once ``start`` has run."""

from __future__ import annotations

import contextlib

import aiohttp
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from provisioning_common.aio import background
from provisioning_common.events import EventBus
from provisioning_common.mongo import Document
from provisioning_common.ratelimit import RateLimiter
from provisioning_common.remote_auth import RemoteAuth
from provisioning_common.webapp import ContainerLifecycle, Storage

from .audit.service import AuditService, service_sender
from .batches.approvals import ApprovalGates
from .batches.cancellation import BatchCanceller
from .batches.coordinator import BatchCoordinator
from .batches.reconcile import BatchReconciler
from .batches.repository import BatchRepository
from .batches.service import BatchService
from .batches.submission import BatchSubmitter
from .batches.transitions import BatchTransitions
from .engine import Engine, TaskStore
from .events.hub import EventHub
from .events.publisher import EventPublisher
from .events.replay import ReplayStream
from .events.repository import EventRepository
from .metrics import queue_depth_loop
from .retention.repository import RetentionRepository
from .retention.service import RetentionSweeper
from .rollback.automatic import AutomaticRollback
from .rollback.ledger import LedgerRecorder
from .rollback.repository import RollbackRepository
from .rollback.service import RollbackContext
from .settings import Settings
from .state.repository import SnapshotRepository, TaskStatsRepository, database_size_bytes, ping
from .state.service import StateContext
from .tasks.service import TaskQueries
from .webhooks import inbox_route
from .webhooks.service import WebhookService
from .workflows.repository import IdempotencyRepository


class Container(ContainerLifecycle):
    settings: Settings
    # storage clients
    storage: Storage
    mongo: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    redis: Redis
    bus: EventBus
    rate_limiter: RateLimiter
    http: aiohttp.ClientSession  # calls to the control center
    # events
    events: EventRepository
    replay: ReplayStream | None
    publisher: EventPublisher
    hub: EventHub
    # auth (the control center's JWKS, introspection, policies, service token)
    auth: RemoteAuth
    # tasks and workflows
    engine: Engine
    tasks: TaskQueries
    idempotency: IdempotencyRepository
    # audit outbox and webhooks
    audit: AuditService
    webhooks: WebhookService
    # batches, state, rollback, retention
    batches: BatchService
    coordinator: BatchCoordinator
    state: StateContext
    rollback: RollbackContext
    retention: RetentionSweeper | None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        # Storage: closed last (Redis, then MongoDB).
        self.storage = Storage.open(s.common)
        stack.push_async_callback(self.storage.aclose)
        self.mongo, self.db = self.storage.client, self.storage.database
        self.redis, self.bus = self.storage.redis, self.storage.bus
        self.rate_limiter = self.storage.rate_limiter

        # Events: the publisher exists (and routes to the webhook inbox) before
        # anything that publishes; the hub fans events out to /ws.
        self.events = EventRepository(self.db)
        await self.events.ensure_indexes()
        # Namespaced by database, like the task index (engine/index.py).
        self.replay = (
            ReplayStream(self.redis, self.db.name, s.ws.replay_cache)
            if s.ws.replay_cache > 0
            else None
        )
        self.publisher = EventPublisher(self.events, self.bus, self.replay)
        route = inbox_route(s.webhooks)
        if route is not None:
            self.publisher.route_to_inbox(route.select)
        self.hub = EventHub(self.bus, s.ws.queue_size)
        await stack.enter_async_context(background(self.hub.run(), "events-hub"))

        # Auth: the HTTP session closes after its revocation listener stops.
        self.http = aiohttp.ClientSession()
        stack.push_async_callback(self.http.close)
        self.auth = RemoteAuth(s.auth.config, self.http, self.redis)
        await stack.enter_async_context(background(self.auth.listen(), "auth-listener"))

        # The engine, before every feature that creates tasks.
        self.engine = Engine(
            TaskStore(self.db, self.redis), s.engine, self.publisher, environ=s.engine.child_env
        )
        await self.engine.start()
        stack.push_async_callback(self.engine.stop)
        self.tasks = TaskQueries(self.engine.store, self.engine.store.index)
        self.idempotency = IdempotencyRepository(self.db)

        self.audit = AuditService(self.db, service_sender(self.auth.service), s.audit)
        await self.audit.start()
        stack.push_async_callback(self.audit.stop)

        self.webhooks = WebhookService(
            s.webhooks,
            self.db,
            EventRepository(self.db),
            bus=self.bus,
            task_lookup=self.engine.store.get,
        )
        await self.webhooks.start()
        stack.push_async_callback(self.webhooks.stop)

        await stack.enter_async_context(
            background(queue_depth_loop(self.engine.store), "metrics-queue-depth")
        )

        # Batches, with their coordinator on every replica (which also keeps the
        # rollback ledger and drives automatic rollbacks); state and rollback use the
        # same repositories.
        repo = BatchRepository(self.db)
        snapshots = SnapshotRepository(self.db)
        ledger = RollbackRepository(self.db)
        for r in (repo, snapshots, ledger):
            await r.ensure_indexes()
        worker_id = self.engine.worker_id
        transitions = BatchTransitions(
            repo=repo, snapshots=snapshots, publisher=self.publisher, worker_id=worker_id
        )
        submitter = BatchSubmitter(repo=repo, engine=self.engine, transitions=transitions)
        ledger_recorder = LedgerRecorder(ledger, s.engine.cli)
        gates = ApprovalGates(
            repo=repo, publisher=self.publisher, audit=self.audit, worker_id=worker_id
        )
        reconciler = BatchReconciler(
            repo=repo,
            engine=self.engine,
            submitter=submitter,
            transitions=transitions,
            ledger=ledger_recorder,
            rollback=AutomaticRollback(
                batches=repo,
                ledger=ledger,
                snapshots=snapshots,
                engine=self.engine,
                publisher=self.publisher,
                worker_id=worker_id,
            ),
            orphan_after_seconds=s.batches.orphan_after_seconds,
            gates=gates,
        )
        self.coordinator = BatchCoordinator(
            repo=repo,
            reconciler=reconciler,
            ledger=ledger_recorder,
            interval=s.batches.coordinator_interval_seconds,
        )
        self.batches = BatchService(
            repo=repo,
            submitter=submitter,
            canceller=BatchCanceller(
                repo=repo,
                engine=self.engine,
                worker_id=worker_id,
                reconcile=reconciler.reconcile,
            ),
            idempotency=self.idempotency,
            cli=s.engine.cli,
            poke=self.coordinator.poke,
            gates=gates,
            allow_self_approval=s.batches.allow_self_approval,
        )
        self.engine.add_final_listener(self.coordinator.on_task_final)
        self.coordinator.start()
        stack.push_async_callback(self.coordinator.stop)
        self.state = StateContext(
            batches=repo,
            store=self.engine.store,
            snapshots=snapshots,
            stats=TaskStatsRepository(self.engine.store),
            storage_probe=self._storage_probe,
            coordinator_probe=self.coordinator.healthy,
            monitoring_probe=self._monitoring_probe,
            database_size=self._database_size,
        )
        self.rollback = RollbackContext(
            repo=ledger,
            batches=repo,
            snapshots=snapshots,
            engine=self.engine,
            tasks=self.tasks,
            publisher=self.publisher,
            worker_id=self.engine.worker_id,
            wait_seconds=s.batches.rollback_wait_seconds,
        )

        # Retention walks the engine's task store and index.
        self.retention = None
        if s.retention.enabled:
            self.retention = RetentionSweeper(
                RetentionRepository(self.engine.store, self.db, repo),
                s.retention,
                worker_id=self.engine.worker_id,
            )
            await stack.enter_async_context(background(self.retention.run(), "retention-sweeper"))

    async def _storage_probe(self) -> bool:
        await ping(self.db)
        return True

    async def _monitoring_probe(self) -> bool:
        # Events reach /ws of every replica through Redis pub/sub.
        return bool(await self.redis.ping())

    async def _database_size(self) -> int:
        return await database_size_bytes(self.db)
