"""The contract's batch example (REST_API_REFERENCE "Batch Operations"), verbatim,
shared by every test that submits it."""

from __future__ import annotations

from typing import Any

CONTRACT_BATCH: dict[str, Any] = {
    "name": "multi_cloud_deployment",
    "version": "1.0.0",
    "storage_backend": "surrealdb",
    "parallel_limit": 5,
    "rollback_enabled": True,
    "operations": [
        {
            "id": "upcloud_servers",
            "type": "server_batch",
            "provider": "upcloud",
            "dependencies": [],
            "server_configs": [
                {"name": "web-01", "plan": "1xCPU-2GB", "zone": "de-fra1"},
                {"name": "web-02", "plan": "1xCPU-2GB", "zone": "us-nyc1"},
            ],
        },
        {
            "id": "aws_taskservs",
            "type": "taskserv_batch",
            "provider": "aws",
            "dependencies": ["upcloud_servers"],
            "taskservs": ["kubernetes", "cilium", "containerd"],
        },
    ],
}
