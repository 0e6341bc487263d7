"""Real OpenSearch nodes for tests that need to control them (stop a data node, restart it).

The launcher lives in ``deploy/opensearch-node/opensearch_node.py`` (standard library only, so
``.ci/run`` can start a node before the virtualenv exists); this module imports it from there::

    from tests.support.opensearch_node import Cluster, build

    build()                                    # mvn package, offline when ~/.m2 has it all
    cluster = Cluster.create(tmp_path / "os", 3)
    cluster.start()                            # green with 3 nodes
    cluster.stop_node(2)                       # SIGTERM: the node closes cleanly
    cluster.kill_node(1)                       # SIGKILL: a crash
    cluster.start_node(2); cluster.wait_green(nodes=2)
    cluster.stop()

Nodes run the lucene k-NN engine (``KNN_ENGINE``): the k-NN plugin on Maven Central has no
faiss JNI libraries.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "deploy" / "opensearch-node" / "opensearch_node.py"
_spec = importlib.util.spec_from_file_location("lorebot_opensearch_node", _PATH)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(_module)

Cluster = _module.Cluster
NodeProcess = _module.NodeProcess
build = _module.build
KNN_ENGINE = _module.KNN_ENGINE

__all__ = ["Cluster", "NodeProcess", "build", "KNN_ENGINE"]
