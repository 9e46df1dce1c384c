"""PostgreSQL through PgBouncer in transaction mode: a campaign runs end to end with
`DATABASE_PREPARED_STATEMENTS=false`, every process (API, webhook path, workers, beat)
connecting through the pooler, the test's database migrated over the direct URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from models import engine_for
from tests.distributed.failover_support import pgbouncer
from tests.e2e.conftest import running_stack
from tests.e2e.helpers import assert_clean_end, outcomes, start_campaign, wait_finished


def test_a_campaign_runs_end_to_end_through_pgbouncer_in_transaction_mode(
    tmp_path: Path, committed_db: str, redis_client: Any
) -> None:
    direct = make_url(committed_db)
    with pgbouncer(direct.port or 5432) as bouncer:
        pooled = bouncer.url(direct.database or "")
        env = {"DATABASE_PREPARED_STATEMENTS": "false", "DATABASE_DIRECT_URL": committed_db}
        api = {"database_prepared_statements": False, "database_direct_url": committed_db}
        with running_stack(tmp_path, api, database_url=pooled, env=env) as stack:
            url = stack.runtime.settings.database_url
            assert url.startswith(pooled) and url.endswith("prepare_threshold=none")
            with engine_for(url).connect() as conn:  # this process, through the pooler too
                assert conn.execute(text("SHOW port")).scalar() == str(direct.port or 5432)
            stack.start_worker(concurrency=3)
            stack.start_worker(concurrency=3)
            stack.start_beat()
            account_id, campaign_id = start_campaign(
                stack, 40, account_cap=6, max_concurrency=6, max_attempts=1
            )
            final = wait_finished(stack, account_id, campaign_id, timeout_s=120)
            stats = assert_clean_end(stack, account_id, campaign_id, max_attempts=1)
            assert sum(outcomes(final).values()) == 40
            assert stats["calls_created"] == final["attempts"]["calls_placed"] == 40
            assert stats["max_concurrent"] <= 6
            logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
            assert "prepared statement" not in logs
            assert (bouncer.workdir / "pgbouncer.log").read_text().count("login attempt") > 0
