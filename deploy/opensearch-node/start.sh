#!/usr/bin/env bash
# Build (offline from ~/.m2 when it can) and start a real OpenSearch node in the background; prints
# OPENSEARCH_URL=... and OPENSEARCH_KNN_ENGINE=... once the cluster is green. Options go to
# `opensearch_node.py start` (--nodes 3, --dir DIR, --heap 512m). Stop: ./stop.sh [--dir DIR].
set -euo pipefail
exec python3 "$(dirname "$0")/opensearch_node.py" start "$@"
