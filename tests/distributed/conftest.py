"""Hosts cut off from each other: the dialer on several hosts of this machine, each behind
its own fault proxy (`dialer.cli.chaos`), a webhook receiver, and the carrier simulator as
the witness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.harness import Cluster, running_cluster


@pytest.fixture(params=["redis", "rabbitmq"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, committed_db: str, redis_client: Any
) -> Iterator[Cluster]:
    """Three running hosts, on each broker in turn (`tests.distributed.harness`)."""
    with running_cluster(tmp_path, request.param) as running:
        yield running
