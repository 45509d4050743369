"""Provisioning orchestrator: workflow tasks, batch DAGs, state, rollback, /ws, webhooks."""
