"""Collaborations: a team of agents working on one task, in the background.

Every step is an event in the owning session's log (``collaboration_started``,
one ``collaboration_step`` per agent turn, ``collaboration_completed``), so a
collaboration's status and transcript are rebuilt by replay. The agents' turns
run on the asyncio loop; their chunks go to live listeners only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import yaml

from actors.agents import AgentError, AgentRegistry, AgentSettings, AgentSpec, TextDelta, TurnInput
from actors.bus import stream_message
from actors.clock import Clock, iso
from actors.errors import InvalidRequest
from actors.ids import new_id

log = structlog.get_logger("sessionhub.collab")

STRATEGIES = ("round_robin", "pipeline")
MAX_ROUNDS = 20
MAX_AGENTS = 16

Ask = Callable[[str, str, dict[str, Any]], Awaitable[Any]]
Listener = asyncio.Queue


def load_team_file(teams_dir: str | None, path: Any) -> dict[str, Any]:
    """A team YAML file under the teams folder; a path that leaves it is refused."""
    if not isinstance(path, str) or not path:
        raise InvalidRequest("team_config_path must be a string", field="team_config_path")
    if not teams_dir:
        raise InvalidRequest(
            "this server has no teams folder (--teams-dir)", field="team_config_path"
        )
    root = Path(teams_dir).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or Path(path).is_absolute():
        raise InvalidRequest("team_config_path leaves the teams folder", field="team_config_path")
    if not target.is_file():
        raise InvalidRequest(f"no team file {path!r}", field="team_config_path")
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"team file unreadable: {exc}", field="team_config_path") from None
    if isinstance(data, dict) and isinstance(data.get("team"), dict):
        data = data["team"]
    return data


def check_team(team: Any, registry: AgentRegistry, settings: AgentSettings) -> dict[str, Any]:
    """A valid team: 1-16 agents with names and roles, a strategy, 1-20 rounds."""
    if not isinstance(team, dict):
        raise InvalidRequest("team must be an object", field="team")
    agents = team.get("agents")
    if not isinstance(agents, list) or not 0 < len(agents) <= MAX_AGENTS:
        raise InvalidRequest(f"team.agents must list 1-{MAX_AGENTS} agents", field="team.agents")
    out = []
    for i, a in enumerate(agents):
        field = f"team.agents[{i}]"
        if not isinstance(a, dict):
            raise InvalidRequest(f"{field} must be an object", field=field)
        name, role = a.get("name"), a.get("role", "")
        if not isinstance(name, str) or not name or not isinstance(role, str):
            raise InvalidRequest(f"{field} needs a name and a role (strings)", field=field)
        try:
            spec = AgentSpec.from_dict(a.get("agent") or {"kind": "echo"})
            if spec.kind == "none":
                raise ValueError("a team agent needs an agent kind other than none")
            registry.validate(spec, settings)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field=f"{field}.agent") from None
        out.append({"name": name, "role": role, "agent": spec.to_dict()})
    strategy = team.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise InvalidRequest(
            f"team.strategy must be one of {', '.join(STRATEGIES)}", field="team.strategy"
        )
    rounds = team.get("max_rounds", 1)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 < rounds <= MAX_ROUNDS:
        raise InvalidRequest(f"team.max_rounds must be 1-{MAX_ROUNDS}", field="team.max_rounds")
    return {"agents": out, "strategy": strategy, "max_rounds": rounds}


def _prompt(task: str, context: Any, transcript: list[dict[str, Any]], member: dict, strategy: str):
    lines = [f"You are {member['name']}, the {member['role'] or 'team member'}.", f"Task: {task}"]
    if context:
        lines.append(f"Context: {context}")
    if strategy == "pipeline" and transcript:
        lines.append(f"Input from {transcript[-1]['agent']}: {transcript[-1]['output']}")
    elif transcript:
        lines.append("Discussion so far:")
        lines.extend(f"- {t['agent']} ({t['role']}): {t['output']}" for t in transcript)
    return "\n".join(lines)


class Collaboration:
    def __init__(self, collab_id: str, session_id: str, team: dict, task: str, context: Any):
        self.collaboration_id = collab_id
        self.session_id = session_id
        self.team = team
        self.task_text = task
        self.context = context
        self.listeners: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.listeners.append(q)
        return q

    def emit(self, payload: dict[str, Any]) -> None:
        for q in self.listeners:
            q.put_nowait(payload)


class CollaborationRunner:
    def __init__(
        self, ask: Ask, registry: AgentRegistry, settings: AgentSettings, clock: Clock
    ) -> None:
        self.ask = ask
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.running: dict[str, Collaboration] = {}

    def _payload(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return stream_message(type_, iso(self.clock.now()), data)

    async def start(self, session_id: str, team: dict, task: str, context: Any) -> Collaboration:
        collab_id = new_id("collab-")
        await self.ask(
            session_id,
            "collaboration_event",
            {
                "type": "collaboration_started",
                "collaboration_id": collab_id,
                "team": team,
                "task": task,
                "context": context,
            },
        )
        collab = Collaboration(collab_id, session_id, team, task, context)
        self.running[collab_id] = collab
        collab.task = asyncio.get_running_loop().create_task(self._run(collab))
        return collab

    async def stop(self) -> None:
        for collab in list(self.running.values()):
            if collab.task is not None:
                collab.task.cancel()
        for collab in list(self.running.values()):
            if collab.task is not None:
                await asyncio.gather(collab.task, return_exceptions=True)

    async def _run(self, c: Collaboration) -> None:
        team = c.team
        members = team["agents"]
        order = [(r, m) for r in range(team["max_rounds"]) for m in members]
        transcript: list[dict[str, Any]] = []
        status, error = "completed", None
        c.emit(self._payload("collaboration_start", {"collaboration_id": c.collaboration_id}))
        try:
            for step, (rnd, member) in enumerate(order, start=1):
                prompt = _prompt(c.task_text, c.context, transcript, member, team["strategy"])
                c.emit(
                    self._payload(
                        "agent_start",
                        {"agent": member["name"], "role": member["role"], "step": step},
                    )
                )
                text = await self._turn(c, member, prompt, step)
                entry = {
                    "step": step,
                    "round": rnd + 1,
                    "agent": member["name"],
                    "role": member["role"],
                    "input": prompt,
                    "output": text,
                }
                transcript.append(entry)
                await self.ask(
                    c.session_id,
                    "collaboration_event",
                    {"type": "collaboration_step", "collaboration_id": c.collaboration_id, **entry},
                )
                c.emit(self._payload("agent_end", {k: entry[k] for k in entry if k != "input"}))
        except asyncio.CancelledError:
            status = "cancelled"
        except AgentError as exc:
            status, error = "failed", {"code": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("collaboration_failed", collaboration_id=c.collaboration_id)
            status, error = "failed", {"code": "agent_error", "message": str(exc)}
        result = transcript[-1]["output"] if transcript else None
        data = {
            "type": "collaboration_completed",
            "collaboration_id": c.collaboration_id,
            "status": status,
            "result": result,
        }
        if error:
            data["error"] = error
        try:
            await self.ask(c.session_id, "collaboration_event", data)
        except Exception as exc:
            log.error("collaboration_not_recorded", error=str(exc))
        end = {"collaboration_id": c.collaboration_id, "status": status, "result": result}
        if error:
            end["error"] = error
        c.emit(self._payload("collaboration_end", end))
        for q in c.listeners:
            q.put_nowait(None)
        self.running.pop(c.collaboration_id, None)
        c.done.set()

    async def _turn(self, c: Collaboration, member: dict, prompt: str, step: int) -> str:
        spec = AgentSpec.from_dict(member["agent"])
        agent = self.registry.create(spec, self.settings)
        turn = TurnInput(
            session_id=c.session_id,
            turn_id=f"{c.collaboration_id}-{step}",
            chat_id="collaboration",
            messages=[{"role": "user", "content": prompt}],
            spec=spec,
            system_prompt=spec.system_prompt,
        )
        parts: list[str] = []
        async for out in agent.stream(turn):
            if isinstance(out, TextDelta) and out.text:
                parts.append(out.text)
                c.emit(
                    self._payload(
                        "stream_chunk",
                        {"content": out.text, "sequence": len(parts), "agent": member["name"]},
                    )
                )
        return "".join(parts)
