"""A PostgreSQL agent's decisions from the signed table and its server's own positions, and the
``/state`` it renders: pure, with their reasons."""

from __future__ import annotations

from paydar.model.routing import RouteMode, ServiceRoute
from paydar.postgres.decide import Action, Disk, acknowledged_lsn, held, impostors, instance_state, next_action
from paydar.postgres.replication import Positions, Walsender
from paydar.workload.contract import InstanceRole

STANDBY = Positions(in_recovery=True, timeline=1, received=900, flushed=880, replayed=870)
FOLLOWING = Positions(in_recovery=True, timeline=1, received=900, flushed=880, replayed=870, upstream_port=5)
PRIMARY = Positions(in_recovery=False, timeline=2, received=1000, flushed=1000, replayed=1000,
                    walsenders=(Walsender(pid=1, role="replicator_there", name="there", flushed=990),
                                Walsender(pid=2, role="replicator_far", name="far", flushed=700)))
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


def test_state_reports_the_flushed_position_the_enacted_epoch_and_what_a_quorum_acknowledged() -> None:
    state = instance_state(component="node.p.here", service="p", region="here", route=THEIRS, epoch=3,
                           table_version=9, positions=STANDBY, ack_replicas=1, fenced=False)
    assert (state.role, state.log_position, state.epoch, state.primary) == (InstanceRole.STANDBY, 880, 3, "there")
    fenced = instance_state(component="node.p.here", service="p", region="here", route=FENCED, epoch=5,
                            table_version=10, positions=None, ack_replicas=1, fenced=True)
    assert (fenced.role, fenced.log_position) == (InstanceRole.FENCED, -1)
    primary = instance_state(component="node.p.here", service="p", region="here",
                             route=ServiceRoute(primary="here", standbys=("there", "far"), epoch=3), epoch=3,
                             table_version=9, positions=PRIMARY, ack_replicas=2, fenced=False)
    assert primary.acked_position == 700, "with ANY 2, a commit is acknowledged once the second standby holds it"
    assert {r: s.matched for r, s in primary.standbys.items()} == {"there": 990, "far": 700}


def test_a_standby_streams_from_the_tables_primary_or_from_nobody_while_fenced() -> None:
    follow = next_action(THEIRS, "here", STANDBY, upstream=None)
    assert (follow.action, follow.reason) == (Action.FOLLOW, "epoch 4 has it stream from there")
    assert next_action(THEIRS, "here", FOLLOWING, upstream="there").action is Action.NOTHING
    cut = next_action(FENCED, "here", FOLLOWING, upstream="there")
    assert (cut.action, cut.reason) == (Action.FOLLOW, "epoch 5 has it stream from nobody"), \
        "nothing a deposed primary sends is received in the fenced epoch"


def test_a_former_primary_comes_back_only_rewound_as_a_standby() -> None:
    rejoin = next_action(THEIRS, "here", None, disk=Disk(former_primary=True))
    assert (rejoin.action, rejoin.reason) == (Action.REJOIN, "a former primary rejoins as there's standby in epoch 4, "
                                                             "rewound with pg_rewind")
    waits = next_action(FENCED, "here", None, disk=Disk(former_primary=True))
    assert waits.action is Action.NOTHING, "with no primary named there is nothing to rewind onto"
    assert next_action(THEIRS, "here", None, fenced=True).action is Action.REJOIN
    assert next_action(OURS, "here", None, disk=Disk(former_primary=True)).action is Action.START, \
        "a primary that crashed while the table still names it restarts as primary"


def test_an_empty_data_directory_is_initialised_only_in_the_first_epoch() -> None:
    first = ServiceRoute(primary="here", standbys=("there",), epoch=1)
    assert next_action(first, "here", None, disk=Disk(initialised=False)).action is Action.START
    refused = next_action(OURS, "here", None, disk=Disk(initialised=False))
    assert (refused.action, refused.reason) == (
        Action.NOTHING, "epoch 3 names here primary but it holds no data: an empty primary is never started; "
                        "restore it or move the primary")
    nothing = next_action(FENCED, "here", None, disk=Disk(initialised=False))
    assert nothing.reason == "no data yet, and nothing to clone from while the service is fenced"
    assert next_action(THEIRS, "here", None, disk=Disk(initialised=False)).action is Action.START, "cloned from there"


def test_a_server_that_runs_but_does_not_answer_is_never_started_twice() -> None:
    held = next_action(OURS, "here", None, running=True)
    assert held.action is Action.NOTHING
    assert held.reason == "the server runs but does not answer; it is not started again"
    deposed = next_action(THEIRS, "here", None, running=True, was_primary=True)
    assert deposed.action is Action.FENCE and "stopped without asking it" in deposed.reason
    standby = next_action(THEIRS, "here", None, running=True)
    assert standby.action is Action.NOTHING, "a standby that does not answer is left to answer again, never fenced"


def test_a_restarted_standby_never_reports_less_than_it_was_seen_to_hold() -> None:
    restarted = Positions(in_recovery=True, timeline=1, received=0, flushed=400, replayed=400)
    reported, mark = held(restarted, (1, 880))
    assert (reported.flushed, reported.received, mark) == (880, 880, (1, 880)), \
        "what it replayed so far is not all it holds"
    reported, mark = held(STANDBY, (1, 500))
    assert (reported.flushed, mark) == (880, (1, 880))
    followed = Positions(in_recovery=True, timeline=2, received=700, flushed=700, replayed=650)
    reported, mark = held(followed, (1, 880))
    assert (reported.flushed, mark) == (700, (2, 700)), "WAL held past a fork is not on the timeline it follows"
    assert held(PRIMARY, (2, 5000)) == (PRIMARY, (0, 0)), "a primary reports its own position"


def test_a_stolen_replication_password_streams_once_under_its_own_regions_name() -> None:
    def sender(pid: int, role: str, name: str) -> Walsender:
        return Walsender(pid=pid, role=f"replicator_{role}", name=name, flushed=1)

    honest = [sender(1, "there", "there"), sender(2, "far", "far"), sender(3, "far", "far_clone"),
              sender(4, "far", "far_clone")]
    assert impostors(honest, ["here", "there", "far"]) == []
    hostile = [sender(5, "there", "far"), sender(6, "there", "there"), sender(7, "there", "there_clone"),
               sender(8, "there", "there_clone"), sender(9, "there", "there_rewind"), sender(10, "stranger", "here")]
    assert [s.pid for s in impostors(honest + hostile, ["here", "there", "far"])] == [5, 6, 9, 10], \
        "another region's name, a second stream, a third copy, a role of no region"


def test_compromised_data_is_stopped_and_never_started_or_rewound_back_in() -> None:
    why = "app.parcels: invalid page in block 0"
    for route, positions in ((OURS, PRIMARY), (THEIRS, STANDBY), (FENCED, STANDBY)):
        decision = next_action(route, "here", positions, compromised=why)
        assert (decision.action, decision.reason) == (
            Action.FENCE, f"its data failed the integrity scan ({why}): stopped, it serves nothing until it is "
                          "rebuilt"), route
    for disk in (Disk(), Disk(former_primary=True)):
        stays = next_action(THEIRS, "here", None, fenced=True, disk=disk, compromised=why)
        assert (stays.action, stays.reason) == (
            Action.NOTHING, "compromised: it stays stopped until it is rebuilt (paydar rebuild)"), "never rewound"
    assert next_action(OURS, "here", None, compromised=why).action is Action.NOTHING, "not even as the primary"
