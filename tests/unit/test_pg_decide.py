"""A PostgreSQL agent's decisions from the signed table and its server's own positions, and the
``/state`` it renders: pure, with their reasons."""

from __future__ import annotations

from paydar.model.routing import RouteMode, ServiceRoute
from paydar.postgres.decide import Action, acknowledged_lsn, instance_state, next_action
from paydar.postgres.replication import Positions
from paydar.workload.contract import InstanceRole

STANDBY = Positions(in_recovery=True, timeline=1, received=900, flushed=880, replayed=870)
PRIMARY = Positions(in_recovery=False, timeline=2, received=1000, flushed=1000, replayed=1000)
OURS = ServiceRoute(primary="here", standbys=("there",), epoch=3)
THEIRS = ServiceRoute(primary="there", standbys=("here",), epoch=4)
FENCED = ServiceRoute(primary=None, standbys=("here", "there"), epoch=5, mode=RouteMode.READ_ONLY, fenced="here")


def test_a_standby_the_table_names_primary_is_promoted() -> None:
    decision = next_action(OURS, "here", STANDBY)
    assert decision.action is Action.PROMOTE and decision.reason == "the table names here primary in epoch 3"


def test_a_deposed_or_fenced_primary_is_fenced_at_once() -> None:
    assert next_action(THEIRS, "here", PRIMARY).reason == \
        "a primary the table deposes must acknowledge nothing: epoch 4 names there primary"
    assert next_action(FENCED, "here", PRIMARY).action is Action.FENCE
    assert next_action(FENCED, "here", STANDBY).action is Action.NOTHING, "a standby of a fenced service waits"
    stays = next_action(OURS, "here", None, fenced=True)
    assert (stays.action, stays.reason) == (Action.NOTHING, "fenced: the server stays stopped until it rejoins as a "
                                                            "standby"), "never back as the primary it was"


def test_a_down_server_is_started_in_the_role_the_table_gives_it() -> None:
    assert next_action(OURS, "here", None).reason == "the server is down and table epoch 3 wants it as primary"
    assert next_action(THEIRS, "here", None).reason == "the server is down and table epoch 4 wants it as standby"
    assert next_action(OURS, "here", PRIMARY).action is Action.NOTHING


def test_a_quorum_acknowledges_up_to_its_kth_standby() -> None:
    assert acknowledged_lsn([500, 900, 700], 1) == 900
    assert acknowledged_lsn([500, 900, 700], 2) == 700
    assert acknowledged_lsn([500], 2) == 0, "fewer standbys than the quorum: nothing acknowledged"


def test_state_reports_the_flushed_position_and_the_role_the_server_has() -> None:
    state = instance_state(component="node.p.here", service="p", region="here", route=THEIRS, table_version=9,
                           positions=STANDBY, acked=0, ack_replicas=1, fenced=False)
    assert (state.role, state.log_position, state.epoch, state.primary) == (InstanceRole.STANDBY, 880, 4, "there")
    fenced = instance_state(component="node.p.here", service="p", region="here", route=FENCED, table_version=10,
                            positions=None, acked=0, ack_replicas=1, fenced=True)
    assert (fenced.role, fenced.log_position) == (InstanceRole.FENCED, -1)


def test_a_server_that_runs_but_does_not_answer_is_never_started_twice() -> None:
    held = next_action(OURS, "here", None, running=True)
    assert held.action is Action.NOTHING
    assert held.reason == "the server runs but does not answer; it is not started again"
    deposed = next_action(THEIRS, "here", None, running=True)
    assert deposed.action is Action.FENCE and "stopped without asking it" in deposed.reason
