"""bench/sink.py: the server version read from a nodes-info answer."""

from __future__ import annotations

import pytest

from bench.sink import server_version


def test_the_version_of_the_node_described() -> None:
    answer = {
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": "callstream",
        "nodes": {"x1Yz": {"name": "node-1", "version": "8.19.21", "build_flavor": "default"}},
    }
    assert server_version(answer) == "8.19.21"


def test_an_answer_without_nodes_is_an_error_that_says_so() -> None:
    # What Elasticsearch answers to `GET /_nodes/_none` (a node id matching no node).
    answer = {"_nodes": {"total": 0, "successful": 0, "failed": 0}, "cluster_name": "callstream", "nodes": {}}
    with pytest.raises(RuntimeError, match="described no node"):
        server_version(answer)
