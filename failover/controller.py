"""One failover controller: judge from signed observations, co-sign, publish, fail static.

Every ``control.interval`` a controller
1. pulls the newest signed round of every prober (refusing unsigned, wrongly signed, replayed
   or stale rounds); once a majority of probers delivered new rounds, their latest rounds are
   one judgement round of its :class:`~failover.judge.Judge`;
2. catches up with any newer certified table a node holds, and re-pushes its table to
   targets that hold an older one (a healed partition, a restarted process);
3. computes the next routes with :func:`failover.planner.plan`; when they differ from the
   held table it signs a proposal and asks its peers, each of which signs only when its own
   view yields exactly the same routes and its votes allow it (:class:`~failover.ballot.Ballot`);
4. with ``threshold`` signatures the table is certified and pushed to every node, gateway and
   peer. Without them nothing changes (fail static).

Operators act through the same path: an intent (drain, fence, promote, clear) posted with
the admin token becomes part of every controller's view, and the resulting table still
needs ``threshold`` controllers to sign it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError

from failover.ballot import Ballot
from failover.config import ControllerConfig
from failover.judge import Judge
from failover.metrics import ControllerMetrics
from failover.planner import Change, Overrides, ReplicaState, fenced_views, is_refence, plan, refence
from infra.component import Foundation
from infra.errors import PaydarError, SignatureError, TableRejected
from infra.files import write_json_atomic
from infra.identity import Role
from infra.routing import RoutingTable, ServiceRoute, SignedTable
from infra.signing import Signature, verify_threshold
from probes.models import ObservationRound, SignedObservations

__all__ = ["Controller", "Disagreement", "Intent", "IntentAction", "votes_of"]

log = logging.getLogger(__name__)
MAX_OBSERVATION_BYTES = 64 * 1024 * 1024
PEER_PING_SECONDS = 1.0
PEER_FRESH_SECONDS = 3.0
REPAIR_EVERY_SECONDS = 1.0
CLOCK_SKEW_SECONDS = 30.0


class IntentAction(StrEnum):
    DRAIN = "drain"
    FENCE = "fence"
    PROMOTE = "promote"
    CLEAR = "clear"


class Intent(BaseModel):
    """An operator's instruction; ``service`` is required for fence and promote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: IntentAction
    region: str
    service: str | None = None


class Disagreement(PaydarError):
    """This controller will not co-sign a proposal; the message says why."""


class Controller:
    """State and behaviour of one controller; ``failover.app`` only translates HTTP."""

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
        self._intents_file = config.data_dir / "intents.json"
        self.intents: list[Intent] = _load_intents(self._intents_file)
        self.rounds: dict[str, ObservationRound] = {}
        self._unjudged: set[str] = set()
        self.peer_seen: dict[str, float] = {}
        self.last_proposal: dict[str, Any] = {}
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
        for task in (self._task, self._repairing):
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
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

    async def tick(self) -> None:
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
        self._retire_done_intents()
        routes, changes = await self.desired()
        if not changes and self.f.guard.under_signed and self._own_key_trusted():
            # A controller key was rotated: the routes stand, but the table in force no longer
            # carries a quorum of signatures that verify. Re-sign the same routes as a new version.
            changes = [Change("table", "re-sign", f"only {len(self.f.guard.signers)} of its signatures verify "
                                                  "under the current trust root")]
        if changes:
            await self._propose(routes, changes)

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
                raw = await response.content.read(MAX_OBSERVATION_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None
        reason = None
        try:
            body = SignedObservations.model_validate_json(raw).open(prober, self.f.trust)
        except ValidationError:
            reason = "malformed"
        except (SignatureError, PaydarError):
            reason = "bad-signature"
        if reason is None:
            held = self.rounds.get(prober)
            # Newer by the clock, not by round number: a restarted prober counts from 1 again.
            if held is not None and body.finished_at <= held.finished_at:
                return None  # nothing new (or a replay): it must not count twice
            if self._clock() - body.finished_at > self.control.observation_max_age:
                reason = "stale"
        if reason is not None:
            self.metrics.observations_refused.labels(prober=prober, reason=reason).inc()
            log.warning("observations refused prober=%s reason=%s", prober, reason)
            return None
        self.rounds[prober] = body
        return body

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
        _, service, region = best[1].split(".", 2)
        raw = await self._get_json(self.config.nodes[service][region] + "/v1/routing-table")
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
        kind, rest = target.split(".", 1)
        if kind == "gateway":
            return self.config.gateways[rest]
        service, region = rest.split(".", 1)
        return self.config.nodes[service][region]

    async def _ping_peers(self) -> None:
        async def ping(peer: str, url: str) -> None:
            if await self._get_json(url + "/livez") is not None:
                self.peer_seen[peer] = time.monotonic()

        await asyncio.gather(*(ping(p, u) for p, u in self.config.peers.items()))
        self.metrics.quorum.set(1 if self.has_quorum else 0)

    # -- decisions -----------------------------------------------------------------------

    def overrides(self) -> Overrides:
        return Overrides(
            drained=frozenset(i.region for i in self.intents if i.action is IntentAction.DRAIN),
            fenced=frozenset((i.service, i.region) for i in self.intents
                             if i.action is IntentAction.FENCE and i.service),
            moves={i.service: i.region for i in self.intents if i.action is IntentAction.PROMOTE and i.service})

    async def desired(self) -> tuple[dict[str, ServiceRoute], list[Change]]:
        """The routes this controller's view calls for, and what changes from the held table."""
        held = self.table
        read_only = [sid for sid, route in held.services.items() if not route.writable]
        states = await asyncio.gather(*(self._replica_states(sid) for sid in read_only))
        views = {sid: fenced_views(s, held.services[sid].epoch) for sid, s in zip(read_only, states)}
        return plan(held, self.topology, down=self.judge.down(), overrides=self.overrides(), views=views,
                    cap=self.control.failover_cap(len(self.topology.services)))

    async def _replica_states(self, service: str) -> dict[str, ReplicaState | None]:
        regions = self.config.nodes[service]
        answers = await asyncio.gather(*(self._get_json(url + "/state") for url in regions.values()))
        states: dict[str, ReplicaState | None] = {}
        for region, answer in zip(regions, answers):
            try:
                states[region] = ReplicaState(epoch=int(answer["epoch"]), log_position=int(answer["log_position"]),
                                              acked_position=int(answer["acked_position"]),
                                              compromised=bool(answer["compromised"])) if answer else None
            except (KeyError, TypeError, ValueError):
                states[region] = None
        return states

    async def _propose(self, routes: dict[str, ServiceRoute], changes: list[Change]) -> None:
        held = self.table
        now = self._clock()
        proposal = RoutingTable(version=held.version + 1, issued_at=now, expires_at=now + self.control.table_ttl,
                                reason=f"{self.config.component}: " + "; ".join(map(str, changes))[:400],
                                services=routes)
        conflicts = self.ballot.conflicts(held, proposal)
        if conflicts:
            # Votes on a promotion split: re-fence those services in a fresh epoch instead, so
            # the next promotion is voted on anew (a re-fence can never lose a write).
            for sid in conflicts:
                epoch = max(self.ballot.highest_epoch(sid), held.services[sid].epoch) + 1
                routes[sid] = refence(held.services[sid], self.topology.service(sid).regions, epoch)
            self._outcome(proposal, "vote-conflict", "; ".join(conflicts.values()) + "; re-fencing")
            proposal = proposal.model_copy(update={"services": routes})
            if self.ballot.conflicts(held, proposal):
                return
        self.ballot.record(held, proposal)
        payload = proposal.model_dump(mode="json")
        own = self.f.signer.sign(payload)
        offer = SignedTable(table=proposal, signatures=(own,)).model_dump_json().encode()
        replies = await asyncio.gather(*(self._ask(peer, url, offer) for peer, url in self.config.peers.items()))
        signatures = [own] + [s for s, _ in replies if s is not None]
        if self.table.version >= proposal.version:
            self._outcome(proposal, "superseded", f"table v{self.table.version} arrived from a peer first")
            return
        try:
            signed = SignedTable(table=proposal, signatures=tuple(signatures))
            self._adopt(signed, source="own proposal")
        except TableRejected as exc:
            if exc.reason == "not-newer":
                self._outcome(proposal, "superseded", "a peer's table arrived first")
            else:
                reasons = "; ".join(r for _, r in replies if r)
                self._outcome(proposal, "no-quorum", f"{len(signatures)} of {self.control.threshold} signatures "
                                                     f"({reasons or 'peers unreachable'}); routing unchanged")
            return
        self._outcome(proposal, "certified", "; ".join(map(str, changes)))
        await self.publish(signed)

    def _outcome(self, proposal: RoutingTable, outcome: str, detail: str) -> None:
        changed = self.last_proposal.get("outcome") != outcome or self.last_proposal.get("version") != proposal.version
        self.last_proposal = {"version": proposal.version, "outcome": outcome, "detail": detail, "at": self._clock()}
        self.metrics.proposals.labels(outcome=outcome).inc()
        if changed:
            log.log(logging.INFO if outcome in ("certified", "superseded") else logging.WARNING,
                    "proposal version=%d outcome=%s detail=%s", proposal.version, outcome, detail)

    async def _ask(self, peer: str, url: str, offer: bytes) -> tuple[Signature | None, str]:
        try:
            async with self._http().post(url + "/v1/proposals", data=offer, timeout=self._ask_timeout,
                                         headers={"Content-Type": "application/json"}) as response:
                answer = await response.json(content_type=None)
                self.peer_seen[peer] = time.monotonic()
                if response.status == 200:
                    return Signature.model_validate(answer["signature"]), ""
                return None, f"{peer}: {answer.get('error', response.status)}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError, ValidationError):
            return None, f"{peer}: unreachable"

    async def consider(self, offer: SignedTable) -> Signature:
        """Co-sign a peer's proposal only if this controller's own view calls for exactly it."""
        table = offer.table
        payload = offer.payload()
        try:
            verify_threshold(payload, offer.signatures, self.f.trust.keys(Role.CONTROLLER), 1, "controller")
        except SignatureError as exc:
            raise Disagreement(f"proposal is not signed by any controller: {exc}") from None
        now = self._clock()
        if abs(table.issued_at - now) > CLOCK_SKEW_SECONDS or \
                abs(table.expires_at - table.issued_at - self.control.table_ttl) > 1.0:
            raise Disagreement("proposal timestamps are off (issued_at skew or ttl differs from control.table_ttl)")
        held = self.table
        if table.version != held.version + 1:
            raise Disagreement(f"proposal v{table.version} does not follow the held v{held.version}")
        routes, _ = await self.desired()
        if self.table is not held:
            raise Disagreement(f"table v{self.table.version} arrived while considering the proposal")
        differ = sorted(s for s in routes if table.services.get(s) != routes[s] and not (
            s in table.services and is_refence(held.services[s], table.services[s], self.topology.service(s).regions)))
        if differ or set(table.services) != set(routes):
            raise Disagreement(f"my view differs for service(s) {', '.join(differ[:10])}")
        refusal = self.ballot.refusal(held, table)
        if refusal is not None:
            raise Disagreement(refusal)
        self.ballot.record(held, table)
        return self.f.signer.sign(payload)

    # -- tables ----------------------------------------------------------------------------

    def offer_table(self, signed: SignedTable, source: str) -> None:
        """A certified table from a peer (or an operator): adopt it if the guard allows."""
        self._adopt(signed, source)

    def _adopt(self, signed: SignedTable, source: str) -> None:
        signers = self.f.guard.accept(signed)
        self.f.persist_table()
        self.metrics.table_version.set(signed.table.version)
        log.info("table adopted version=%d source=%s signers=%d reason=%s", signed.table.version, source,
                 len(signers), signed.table.reason)

    async def publish(self, signed: SignedTable) -> dict[str, str]:
        """Push a certified table to every node, gateway and peer controller."""
        targets = {f"node.{s}.{r}": url for s, regions in self.config.nodes.items() for r, url in regions.items()}
        targets |= {f"gateway.{r}": url for r, url in self.config.gateways.items()}
        targets |= dict(self.config.peers)
        results = await asyncio.gather(*(self._push(url, signed) for url in targets.values()))
        outcome = dict(zip(targets, results))
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
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return "unreachable"

    async def _get_json(self, url: str) -> dict[str, Any] | None:
        try:
            async with self._http().get(url) as response:
                if response.status != 200:
                    return None
                answer = await response.json(content_type=None)
                return answer if isinstance(answer, dict) else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None

    # -- operator intents ----------------------------------------------------------------

    def check_admin(self, authorization: str) -> bool:
        token = authorization.removeprefix("Bearer ")
        return hmac.compare_digest(token.encode(), self.f.admin_token.encode())

    def apply_intent(self, intent: Intent) -> list[Intent]:
        """Record an operator intent (validated against the topology); return the intents in force."""
        if intent.region not in self.topology.region_names:
            raise PaydarError(f"unknown region {intent.region!r}; regions: {', '.join(self.topology.region_names)}")
        if intent.service is not None:
            spec = self.topology.service(intent.service)
            if intent.region not in spec.regions:
                raise PaydarError(f"service {intent.service} has no replica in {intent.region}; "
                                  f"its regions are {', '.join(spec.regions)}")
        elif intent.action in (IntentAction.FENCE, IntentAction.PROMOTE):
            raise PaydarError(f"{intent.action} needs a service")
        if intent.action is IntentAction.CLEAR:
            self.intents = [i for i in self.intents if not (
                i.region == intent.region and intent.service in (None, i.service))]
        else:
            self.intents = [i for i in self.intents if not (
                i.action is intent.action and i.service == intent.service and
                (i.region == intent.region or intent.action is IntentAction.PROMOTE))] + [intent]
        write_json_atomic(self._intents_file, [i.model_dump(mode="json") for i in self.intents])
        log.info("operator intent recorded action=%s region=%s service=%s", intent.action, intent.region,
                 intent.service)
        return self.intents

    def _retire_done_intents(self) -> None:
        done = [i for i in self.intents if i.action is IntentAction.PROMOTE and i.service
                and self.table.services[i.service].primary == i.region]
        if done:
            self.intents = [i for i in self.intents if i not in done]
            write_json_atomic(self._intents_file, [i.model_dump(mode="json") for i in self.intents])

    # -- status --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "component": self.config.component, "region": self.config.region, "role": "controller",
            "table_version": self.table.version, "signers": sorted(self.f.guard.signers),
            "threshold": self.control.threshold, "peers_reachable": self.peers_reachable,
            "quorum": self.has_quorum, "judgement_rounds": self.judge.rounds,
            "down": sorted(self.judge.down()),
            "probers": {p: {"round": r.round, "age_seconds": round(now - r.finished_at, 3),
                            "failing": sorted(o.target for o in r.failing)}
                        for p, r in self.rounds.items()},
            "intents": [i.model_dump(mode="json") for i in self.intents],
            "last_proposal": self.last_proposal,
        }


def votes_of(body: ObservationRound) -> dict[str, bool]:
    """A prober's round as votes on nodes: ready, and not diverged in the integrity check."""
    votes = dict.fromkeys((t for t in body.ready if t.startswith("node.")), True)
    votes.update((o.target, False) for o in body.failing if o.target.startswith("node."))
    for check in body.integrity:
        for region in check.diverged:
            votes[f"node.{check.service}.{region}"] = False
    return votes


def _load_intents(path: Any) -> list[Intent]:
    if not path.exists():
        return []
    try:
        return [Intent.model_validate(i) for i in json.loads(path.read_text())]
    except (OSError, ValueError, ValidationError) as exc:
        raise SystemExit(f"cannot read operator intents at {path}: {exc}; fix or remove the file") from None
