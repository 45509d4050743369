"""Workflow submissions: one task each (DESIGN §5 table), with ``Idempotency-Key``."""
