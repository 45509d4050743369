"""Tasks feature: serves ``/tasks``. The engine (``container.engine``) runs in every
replica whose ``ENGINE_ENABLED`` is true; see services/orchestrator/ENGINE_API.md.

    engine = container_of(request).engine
"""
