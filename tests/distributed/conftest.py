"""Hosts cut off from each other: the dialer on several hosts of this machine, each behind
its own fault proxy (`dialer.cli.chaos`), a webhook receiver, and the carrier simulator as
the witness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.harness import Cluster, running_cluster


@pytest.fixture
def cluster(tmp_path: Path, committed_db: str, redis_client: Any) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as running:
        yield running
