"""What a service's manifest entry and its application agree on: the names of the application's
deployments, the `user_config` key of the version they serve and the `args` key of the
real-time replicas' request merging.

No imports: replicas read these names without the manifest's YAML editing (serving.manifest).
"""

from __future__ import annotations

REALTIME = "Realtime"
BATCH = "Batch"
DEPLOYMENTS = (REALTIME, BATCH)
#: `user_config` key of every deployment: the registered version it serves (None: none yet).
MODEL_VERSION_KEY = "model_version"
#: `args` key of an application: its spec's `serving.request_merging` (also in `/health`).
REQUEST_MERGING_KEY = "request_merging"
