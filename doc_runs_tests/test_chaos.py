"""The chaos test's short form (bench/chaos.py; its long form runs in bin/bench): a deployment
started by the real `bin/up` takes uploads over HTTP, `doc-runs submit` bursts and poison
messages while each of its parts is SIGKILLed once (the run worker, the code server, the HTTP
API, the daemon, then everything at once), and is restarted only as `bin/up` or its
supervisor would. In the end every accepted document has succeeded, within three minutes of
the last restart; no model request was sent again after its answer was stored; every poison
message is a dead letter with its reason; every document's final outcome event agrees with
the catalog; nothing is left half-written or in flight."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import ChaosPlan, figures_table, run_chaos


def test_a_deployment_whose_parts_are_killed_under_load_finishes_every_document(
        tmp_path: Path, redis_server_url: str) -> None:
    work = tmp_path / "deployment"
    work.mkdir()
    plan = ChaosPlan(seconds=240, kill_every_s=20, in_order=True,
                     parts=("run_worker", "code_server", "api", "daemon", "all"),
                     uploads_per_s=1.0, submit_every_s=8, submit_burst=4, poison_every=2,
                     seed=11, settle_s=240)
    result = run_chaos(work, plan, redis_url=redis_server_url)
    table = figures_table(result)
    assert [kill.part for kill in result.kills] == list(plan.parts), table
    assert all(kill.pids for kill in result.kills), table  # each kill hit a process
    assert result.accepted >= 50 and result.accepted_queue > 0, table
    assert result.holds, table
    assert result.states == {"succeeded": result.accepted}, table
    # The last kill takes everything: from its restart.
    assert result.seconds_from_last_start is not None and result.seconds_from_last_start < 180, \
        table
    assert result.poison_sent > 0 and result.dead_letters >= result.poison_sent, table
    assert result.starts >= 3, table  # the daemon's death and the power cut restart bin/up
