#!/usr/bin/env bash
# Stop the nodes that start.sh started (same --dir).
set -euo pipefail
exec python3 "$(dirname "$0")/opensearch_node.py" stop "$@"
