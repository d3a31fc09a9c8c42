"""One failover controller: judge from signed observations, co-sign, publish, fail static.

Every ``control.interval`` a controller
1. pulls the newest signed round of every prober (refusing unsigned, wrongly signed, replayed
   or stale rounds); once a majority of probers delivered new rounds, their latest rounds are
   one judgement round of its :class:`~paydar.failover.judge.Judge`;
2. catches up with any newer certified table a node holds, and re-pushes its table to
   targets that hold an older one (a healed partition, a restarted process);
3. decides from that snapshot (:func:`paydar.failover.decide.decide`: the next routes with
   :func:`paydar.failover.planner.plan`, a verdict and its reason); when they differ from the
   held table it signs a proposal and asks its peers, each of which signs only when its own
   view yields exactly the same routes and its votes allow it (:class:`~paydar.failover.ballot.Ballot`);
4. with ``threshold`` signatures the table is certified and pushed to every node, gateway and
   peer. Without them nothing changes (fail static).

Operators act through the same path: an intent (drain, fence, promote, clear) posted with
the admin token becomes part of every controller's view, and the resulting table still
needs ``threshold`` controllers to sign it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from pydantic import ValidationError

from paydar.failover.ballot import Ballot, changes_of
from paydar.failover.config import ControllerConfig
from paydar.failover.cosign import decide_cosign
from paydar.failover.decide import Decision, Snapshot, Verdict, decide, proposal_of
from paydar.failover.intents import Intent, IntentLog, SignedIntent
from paydar.failover.judge import Judge
from paydar.failover.metrics import ControllerMetrics
from paydar.failover.planner import ReplicaState, fenced_views
from paydar.failover.rounds import RoundPlan, RoundVerdict, admit_round
from paydar.failover.state import ControllerState, ProberRound, ProposalOutcome
from paydar.model.errors import PaydarError, SignatureError, TableRejected, TableRejection
from paydar.model.identity import Role
from paydar.model.ids import ComponentId, Kind, gateway_id, node_id
from paydar.model.routing import RoutingTable, SignedTable
from paydar.model.signing import Signature, verify_threshold
from paydar.model.wire import parse_json
from paydar.probes.models import ObservationRound
from paydar.server.answers import read_up_to
from paydar.server.component import Foundation
from paydar.workload.contract import InstanceState

__all__ = ["Controller", "Disagreement", "prevote_payload", "votes_of"]

log = logging.getLogger(__name__)
MAX_OBSERVATION_BYTES = 16 * 1024 * 1024
MAX_ANSWER_BYTES = 9 * 1024 * 1024  # a peer's answer may carry a table
PEER_PING_SECONDS = 1.0
PEER_FRESH_SECONDS = 3.0
REPAIR_EVERY_SECONDS = 1.0
CLOCK_SKEW_SECONDS = 30.0


class Disagreement(PaydarError):
    """This controller will not co-sign a proposal; the message says why."""


class Controller:
    """State and behaviour of one controller; ``paydar.failover.app`` only translates HTTP."""

    def __init__(self, *, config: ControllerConfig, foundation: Foundation, metrics: ControllerMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.f = foundation
        self.metrics = metrics
        self.topology = foundation.topology
        self.control = foundation.topology.control
        self.judge = Judge(config.probers, down_after=self.control.down_after_rounds,
                           up_after=self.control.up_after_rounds)
        self.ballot = Ballot(config.data_dir / "votes.json")
        self.intent_log = IntentLog(config.data_dir / "intents.json", foundation.topology)
        self.round_plan = RoundPlan(
            targets={node_id(sid, r) for sid, regions in config.nodes.items() for r in regions}
            | {gateway_id(r) for r in config.gateways},
            services={sid: tuple(regions) for sid, regions in config.nodes.items()})
        self._tasks: set[asyncio.Task[None]] = set()
        self.rounds: dict[str, ObservationRound] = {}
        self._unjudged: set[str] = set()
        self.peer_seen: dict[str, float] = {}
        self.last_proposal: ProposalOutcome | None = None
        self._clock = clock
        self._pushed: dict[str, float] = {}
        self._next_ping = 0.0
        self._task: asyncio.Task[None] | None = None
        self._repairing: asyncio.Task[None] | None = None
        self._ask_timeout = aiohttp.ClientTimeout(total=2.0)
        self.session: aiohttp.ClientSession | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        # Every read and push is bounded by the probe timeout, so a hung target costs one
        # timeout per tick; a peer's answer to a proposal includes its own reads, so it gets more.
        probe_timeout = self.topology.probes.timeout
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128),
                                             timeout=aiohttp.ClientTimeout(total=probe_timeout))
        self._ask_timeout = aiohttp.ClientTimeout(total=3 * probe_timeout + 1.0)
        self.metrics.table_version.set(self.table.version)
        self._task = asyncio.create_task(self._run(), name="control-loop")

    async def stop(self) -> None:
        for task in (self._task, self._repairing, *self._tasks):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.session:
            await self.session.close()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad tick must not end the controller
                log.exception("control tick failed")
            await asyncio.sleep(max(0.0, self.control.interval - (time.monotonic() - started)))

    def _http(self) -> aiohttp.ClientSession:
        assert self.session is not None, "controller not started"
        return self.session

    @property
    def table(self) -> RoutingTable:
        assert self.f.guard.current is not None
        return self.f.guard.current.table

    @property
    def peers_reachable(self) -> int:
        now = time.monotonic()
        return sum(1 for seen in self.peer_seen.values() if now - seen <= PEER_FRESH_SECONDS)

    @property
    def has_quorum(self) -> bool:
        return self.peers_reachable + 1 >= self.control.threshold

    # -- one tick ------------------------------------------------------------------------

    async def tick(self) -> Decision:
        """One tick: read a snapshot, :func:`~paydar.failover.decide.decide`, act; returns the decision."""
        snapshot = await self.observe()
        decision = decide(snapshot, self.topology)
        if decision.verdict is not Verdict.STEADY:
            await self._propose(decision)
        return decision

    async def observe(self) -> Snapshot:
        """Gather what this tick decides from: new rounds judged, missed tables caught up, stale
        targets repaired, peers pinged, finished intents retired; then the snapshot itself."""
        self._unjudged.update(await self._pull_observations())
        if len(self._unjudged) >= self.judge.quorum:
            # A judgement round needs new evidence from a majority of probers; it then weighs
            # every prober's latest round that is not stale (probers' rounds are not in step,
            # so "new in this tick" alone would rarely give a majority).
            now = self._clock()
            latest = {p: r for p, r in self.rounds.items() if now - r.finished_at <= self.control.observation_max_age}
            self.judge.judge_round({p: votes_of(r) for p, r in latest.items()}, fresh=self._unjudged)
            self._unjudged.clear()
            self.metrics.judgement_rounds.inc()
            self.metrics.targets_down.set(len(self.judge.down()))
        await self._catch_up()
        if self._repairing is None or self._repairing.done():  # pushes to a hung target never stall a tick
            self._repairing = asyncio.create_task(self._repair(), name="repair")
        if time.monotonic() >= self._next_ping:
            self._next_ping = time.monotonic() + PEER_PING_SECONDS
            await self._ping_peers()
        self.intent_log.retire_done(self.table)
        return await self.snapshot()

    async def snapshot(self) -> Snapshot:
        """The held table and this controller's view of it, as :func:`decide` takes them."""
        held = self.table
        read_only = [sid for sid, route in held.services.items() if not route.writable]
        states = await asyncio.gather(*(self._replica_states(sid) for sid in read_only))
        views = {sid: fenced_views(s, held.services[sid].epoch) for sid, s in zip(read_only, states, strict=True)}
        guard = self.f.guard
        return Snapshot(held=held, down=self.judge.down(), overrides=self.intent_log.overrides(), views=views,
                        valid_signers=len(guard.signers), under_signed=guard.under_signed,
                        own_key_trusted=self._own_key_trusted())

    def _own_key_trusted(self) -> bool:
        """Whether this controller signs with the key the trust root lists for it (false between
        a rotation of its own key and its restart)."""
        try:
            return self.f.trust.key_of(self.config.component)[0] == self.f.signer.key_id
        except PaydarError:
            return False

    async def _pull_observations(self) -> set[str]:
        """Pull every prober's newest round; return the probers that delivered a new one."""
        answers = await asyncio.gather(*(self._fetch_round(p, url) for p, url in self.config.probers.items()))
        return {r.prober for r in answers if r is not None}

    async def _fetch_round(self, prober: str, url: str) -> ObservationRound | None:
        try:
            async with self._http().get(url + "/v1/observations") as response:
                if response.status != 200:
                    return None
                raw = await read_up_to(response, MAX_OBSERVATION_BYTES)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        admission = admit_round(raw, prober=prober, trust=self.f.trust, plan=self.round_plan,
                                held=self.rounds.get(prober), now=self._clock(),
                                max_age=self.control.observation_max_age)
        if admission.verdict is RoundVerdict.NOT_NEW:
            return None
        if admission.body is None:
            self.metrics.observations_refused.labels(prober=prober, reason=admission.verdict.value).inc()
            log.warning("observations refused prober=%s reason=%s: %s", prober, admission.verdict, admission.detail)
            return None
        self.rounds[prober] = admission.body
        return admission.body

    async def _catch_up(self) -> None:
        """Adopt a newer certified table that some node already holds (a missed publish)."""
        best: tuple[int, str] | None = None
        for body in self.rounds.values():
            for version, holders in body.tables.items():
                node = next((t for t in holders if t.startswith("node.")), None)
                if node is not None and version > self.table.version and (best is None or version > best[0]):
                    best = (version, node)
        if best is None:
            return
        raw = await self._get_json(self._url_of(best[1]) + "/v1/routing-table")
        if raw is None:
            return
        try:
            self._adopt(SignedTable.model_validate(raw), source=best[1])
        except (TableRejected, ValidationError) as exc:
            log.warning("newer table at %s refused: %s", best[1], exc)

    async def _repair(self) -> None:
        """Re-push the held table to nodes and gateways that report an older one."""
        signed = self.f.guard.current
        assert signed is not None
        now = time.monotonic()
        stale: set[str] = set()
        for body in self.rounds.values():
            for version, holders in body.tables.items():
                if version < self.table.version:
                    stale.update(holders)
        due = [t for t in sorted(stale) if now - self._pushed.get(t, 0.0) >= REPAIR_EVERY_SECONDS]
        for target in due:
            self._pushed[target] = now
        if due:
            await asyncio.gather(*(self._push(self._url_of(t), signed) for t in due))

    def _url_of(self, target: str) -> str:
        parsed = ComponentId.parse(target)
        if parsed.kind is Kind.GATEWAY:
            return self.config.gateways[str(parsed.region)]
        return self.config.nodes[str(parsed.service)][str(parsed.region)]

    async def _ping_peers(self) -> None:
        async def ping(peer: str, url: str) -> None:
            if await self._get_json(url + "/livez") is not None:
                self.peer_seen[peer] = time.monotonic()

        await asyncio.gather(*(ping(p, u) for p, u in self.config.peers.items()))
        self.metrics.quorum.set(1 if self.has_quorum else 0)

    # -- decisions -----------------------------------------------------------------------

    async def _replica_states(self, service: str) -> dict[str, ReplicaState | None]:
        regions = self.config.nodes[service]
        answers = await asyncio.gather(*(self._get_json(url + "/state") for url in regions.values()))
        states: dict[str, ReplicaState | None] = {}
        for region, answer in zip(regions, answers, strict=True):
            try:  # a replica's own answer is untrusted: any surprise makes it "did not answer"
                node = InstanceState.model_validate(answer) if answer else None
            except ValidationError:
                node = None
            states[region] = ReplicaState(epoch=node.epoch, log_position=node.log_position,
                                          acked_position=node.acked_position,
                                          compromised=bool(node.compromised)) if node else None
        return states

    async def _propose(self, decision: Decision) -> None:
        held = self.table
        proposal = proposal_of(held, decision, proposer=self.config.component, now=self._clock(),
                               ttl=self.control.table_ttl)
        allowed = self._within_votes(held, proposal)
        if allowed is None:
            return
        proposal = allowed
        if self.ballot.signed_successor(held) is None:
            # Signing is a vote for the only successor of the held table this controller will
            # ever sign: it asks first whether enough peers' views agree, so a view of its own
            # that the others do not share (and that may pass) never locks its vote.
            agreed, refusals = await self._prevote(proposal)
            if agreed + 1 < self.control.threshold:
                reasons = "; ".join(refusals)
                self._outcome(proposal, "no-quorum", f"pre-vote: {agreed + 1} of {self.control.threshold} views "
                                                     f"agree ({reasons or 'peers unreachable'}); nothing signed")
                return
            # While the pre-vote was out, a peer's table or proposal may have arrived and been
            # signed: the votes are checked again, with nothing awaited before they are recorded.
            if self.table is not held:
                self._outcome(proposal, "superseded", f"table v{self.table.version} arrived during the pre-vote")
                return
            if (refusal := self.ballot.refusal(held, proposal)) is not None:
                self._outcome(proposal, "waiting", f"{refusal} during the pre-vote; nothing more signed")
                return
        self.ballot.record(held, proposal)
        own = self.f.signer.sign(proposal.model_dump(mode="json"))
        offer = SignedTable(table=proposal, signatures=(own,)).model_dump_json().encode()
        signatures, replies = await self._collect(own, offer)
        if self.table.version >= proposal.version:
            self._outcome(proposal, "superseded", f"table v{self.table.version} arrived from a peer first")
            return
        if len(signatures) < self.control.threshold:
            reasons = "; ".join(r for _, r in replies if r)
            self._outcome(proposal, "no-quorum", f"{len(signatures)} of {self.control.threshold} signatures "
                                                 f"({reasons or 'peers unreachable'}); routing unchanged")
            return
        try:
            signed = SignedTable(table=proposal, signatures=tuple(signatures))
            self._adopt(signed, source="own proposal")
        except TableRejected as exc:
            if exc.reason == TableRejection.NOT_NEWER:
                self._outcome(proposal, "superseded", "a peer's table arrived first")
            else:
                reasons = "; ".join(r for _, r in replies if r)
                self._outcome(proposal, "no-quorum", f"{len(signatures)} of {self.control.threshold} signatures "
                                                     f"({reasons or 'peers unreachable'}); routing unchanged")
            return
        self._outcome(proposal, "certified", decision.reason)
        await self.publish(signed)

    def _within_votes(self, held: RoutingTable, proposal: RoutingTable) -> RoutingTable | None:
        """The proposal this controller's votes allow, or None (nothing it may propose now).

        A service whose wanted route breaks a route vote keeps its held route, so a conflict on
        one service never blocks the others. When this controller already signed another
        successor of the held table, it proposes that one again if its own view still calls
        for every change in it, and nothing otherwise: it never signs two successors.
        """
        routes = dict(proposal.services)
        for sid, why in self.ballot.conflicts(held, proposal).items():
            routes[sid] = held.services[sid]
            self._outcome(proposal, "vote-conflict", f"{why}; service {sid} left as it is")
        prior = self.ballot.signed_successor(held)
        if prior is not None and prior != changes_of(held, proposal.model_copy(update={"services": routes})):
            if any(routes.get(sid) != route for sid, route in prior.items()):
                self._outcome(proposal, "waiting", f"already signed another successor of v{held.version}, which "
                                                   "my view no longer calls for; waiting for a peer's table")
                return None
            routes = {**held.services, **prior}
        if routes == held.services and not self.f.guard.under_signed:
            return None
        return proposal.model_copy(update={"services": routes})

    def _outcome(self, proposal: RoutingTable, outcome: str, detail: str) -> None:
        held = self.last_proposal
        changed = held is None or (held.outcome, held.version) != (outcome, proposal.version)
        self.last_proposal = ProposalOutcome(version=proposal.version, outcome=outcome, detail=detail[:2000],
                                             at=self._clock())
        self.metrics.proposals.labels(outcome=outcome).inc()
        if changed:
            log.log(logging.INFO if outcome in ("certified", "superseded") else logging.WARNING,
                    "proposal version=%d outcome=%s detail=%s", proposal.version, outcome, detail)

    async def _collect(self, own: Signature,
                       offer: bytes) -> tuple[list[Signature], list[tuple[Signature | None, str]]]:
        """Ask every peer to co-sign; return as soon as ``threshold`` signatures are in hand, so a
        hung peer (its whole region frozen) costs nothing once the others have answered."""
        asks = [asyncio.create_task(self._ask(peer, url, offer)) for peer, url in self.config.peers.items()]
        signatures, replies = [own], []
        try:
            for answer in asyncio.as_completed(asks):
                signature, why = await answer
                replies.append((signature, why))
                if signature is not None:
                    signatures.append(signature)
                if len(signatures) >= self.control.threshold:
                    break
        finally:
            for ask in asks:
                ask.cancel()
            await asyncio.gather(*asks, return_exceptions=True)
        return signatures, replies

    async def _prevote(self, proposal: RoutingTable) -> tuple[int, list[str]]:
        """How many peers' views call for ``proposal`` (asked without anyone voting), and why not."""
        asked = SignedTable(table=proposal, signatures=(self.f.signer.sign(prevote_payload(proposal)),))
        offer = asked.model_dump_json().encode()

        async def ask(peer: str, url: str) -> str | None:
            try:
                async with self._http().post(url + "/v1/prevotes", data=offer, timeout=self._ask_timeout,
                                             headers={"Content-Type": "application/json"}) as response:
                    answer = parse_json(await read_up_to(response, MAX_ANSWER_BYTES))
                    self.peer_seen[peer] = time.monotonic()
                    return None if response.status == 200 and answer.get("agree") is True else \
                        f"{peer}: {str(answer.get('error', response.status))[:300]}"
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError, AttributeError):
                return f"{peer}: unreachable"

        answers = await asyncio.gather(*(ask(p, u) for p, u in self.config.peers.items()))
        return sum(1 for a in answers if a is None), [a for a in answers if a]

    async def _ask(self, peer: str, url: str, offer: bytes) -> tuple[Signature | None, str]:
        try:
            async with self._http().post(url + "/v1/proposals", data=offer, timeout=self._ask_timeout,
                                         headers={"Content-Type": "application/json"}) as response:
                answer = parse_json(await read_up_to(response, MAX_ANSWER_BYTES))
                self.peer_seen[peer] = time.monotonic()
                if response.status == 200:
                    return Signature.model_validate(answer["signature"]), ""
                return None, f"{peer}: {answer.get('error', response.status)}"
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return None, f"{peer}: unreachable"

    async def consider(self, offer: SignedTable) -> Signature:
        """Co-sign a peer's proposal only if this controller's own view calls for it
        (:func:`paydar.failover.cosign.decide_cosign` has the rules and their reasons)."""
        held, proposers = await self._weigh(offer, offer.payload())
        self.ballot.record(held, offer.table)
        own = self.f.signer.sign(offer.payload())
        if len(proposers - {self.f.signer.key_id}) + 1 >= self.control.threshold:
            # With this signature the table is certified: publish it ourselves, so a proposer
            # that collects signatures and withholds the table cannot keep it from the others.
            signed = SignedTable(table=offer.table, signatures=(*offer.signatures, own))
            self._background(self._certify(signed), "certify")
        return own

    async def prevote(self, offer: SignedTable) -> None:
        """Whether this controller would co-sign ``offer`` now, decided exactly as :meth:`consider`
        decides, with nothing signed and no vote recorded. ``offer`` carries its proposer's
        signature over :func:`prevote_payload`, which is never a table signature, so a
        pre-vote can never be turned into a certified table. Raises :class:`Disagreement`."""
        await self._weigh(offer, prevote_payload(offer.table))

    async def _weigh(self, offer: SignedTable, signed: dict[str, Any]) -> tuple[RoutingTable, frozenset[str]]:
        """The held table and the proposers' key ids, when this controller agrees with ``offer``."""
        try:
            proposers = verify_threshold(signed, offer.signatures, self.f.trust.keys(Role.CONTROLLER), 1,
                                         Role.CONTROLLER.value)
        except SignatureError:
            proposers = frozenset()
        held = self.table
        routes = decide(await self.snapshot(), self.topology).routes if proposers else {}
        if self.table is not held:
            raise Disagreement(f"table v{self.table.version} arrived while considering the proposal")
        decision = decide_cosign(held=held, proposal=offer.table, own_routes=routes,
                                 signed_by_controller=bool(proposers), under_signed=self.f.guard.under_signed,
                                 ballot=self.ballot, now=self._clock(), ttl=self.control.table_ttl,
                                 skew=CLOCK_SKEW_SECONDS)
        if not decision.sign:
            raise Disagreement(str(decision))
        return held, proposers

    async def _certify(self, signed: SignedTable) -> None:
        try:
            self._adopt(signed, source="co-signed proposal")
        except TableRejected:
            return
        await self.publish(signed)

    def _background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- tables ----------------------------------------------------------------------------

    def offer_table(self, signed: SignedTable, source: str) -> None:
        """A certified table from a peer (or an operator): adopt it if the guard allows."""
        self._adopt(signed, source)

    def _adopt(self, signed: SignedTable, source: str) -> None:
        def refused(reason: str) -> None:
            if reason == TableRejection.EQUIVOCATION:
                self.metrics.equivocations.inc()

        self.f.adopt(signed, source=source, on_refused=refused)
        self.metrics.table_version.set(signed.table.version)
        self.ballot.prune(signed.table)

    async def publish(self, signed: SignedTable) -> dict[str, str]:
        """Push a certified table to every node, gateway and peer controller (an agency app's
        instance obeys no table: the gateways in front of it do)."""
        apps = self.topology.http_services
        targets = {node_id(s, r): url for s, regions in self.config.nodes.items() if s not in apps
                   for r, url in regions.items()}
        targets |= {gateway_id(r): url for r, url in self.config.gateways.items()}
        targets |= dict(self.config.peers)
        results = await asyncio.gather(*(self._push(url, signed) for url in targets.values()))
        outcome = dict(zip(targets, results, strict=True))
        accepted = sum(1 for r in results if r in ("accepted", "held"))
        log.info("table published version=%d accepted=%d of %d", signed.table.version, accepted, len(targets))
        return outcome

    async def _push(self, url: str, signed: SignedTable) -> str:
        try:
            async with self._http().post(url + "/v1/routing-table", data=signed.model_dump_json().encode(),
                                         headers={"Content-Type": "application/json"}) as response:
                if response.status == 200:
                    return "accepted"
                return "held" if response.status == 409 else f"refused ({response.status})"
        except (TimeoutError, aiohttp.ClientError, OSError):
            return "unreachable"

    async def _get_json(self, url: str) -> dict[str, Any] | None:
        try:
            async with self._http().get(url) as response:
                if response.status != 200:
                    return None
                answer = parse_json(await read_up_to(response, MAX_ANSWER_BYTES))
                return answer if isinstance(answer, dict) else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None

    # -- operator intents ----------------------------------------------------------------

    def admit_intent(self, signed: SignedIntent) -> list[Intent]:
        """Admit an operator-signed intent (``IntentRefused`` says why not); the intents in force."""
        return self.intent_log.admit(signed, self.f.trust, self._clock())

    # -- status --------------------------------------------------------------------------

    def state(self) -> ControllerState:
        """What ``GET /state`` answers: table, quorum, judgement, probers' rounds, intents, last proposal."""
        now = self._clock()
        return ControllerState(
            component=self.config.component, region=self.config.region, table_version=self.table.version,
            signers=sorted(self.f.guard.signers), threshold=self.control.threshold,
            peers_reachable=self.peers_reachable, quorum=self.has_quorum, judgement_rounds=self.judge.rounds,
            down=sorted(self.judge.down()),
            probers={p: ProberRound(round=r.round, age_seconds=round(now - r.finished_at, 3),
                                    failing=sorted(o.target for o in r.failing)) for p, r in self.rounds.items()},
            intents=list(self.intent_log.intents), last_proposal=self.last_proposal)


def prevote_payload(table: RoutingTable) -> dict[str, Any]:
    """What a proposer signs to ask for a pre-vote: the table wrapped, so that the signature
    verifies as nothing but a pre-vote."""
    return {"prevote": table.model_dump(mode="json")}


def votes_of(body: ObservationRound) -> dict[str, bool]:
    """A prober's round as votes on nodes: ready, and not diverged in the integrity check."""
    votes = dict.fromkeys((t for t in body.ready if t.startswith("node.")), True)
    votes.update((o.target, False) for o in body.failing if o.target.startswith("node."))
    for check in body.integrity:
        for region in check.diverged:
            votes[node_id(check.service, region)] = False
    return votes
