"""One launch of a job, as the job store keeps it: typed on the way out, JSON in the database.

The plan is a ``LaunchPlan`` and the state a ``JobState``; the database columns keep the JSON and
strings they always held, so records written by earlier versions read back the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mfctl.cluster.health import JobState
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import LaunchPlan, NodePlan


@dataclass
class JobRecord:
    id: str
    name: str
    job_dir: str
    transport: str
    #: The job spec as launched, env values redacted (they may be secrets).
    spec: dict[str, Any]
    plan: LaunchPlan
    #: The hosts-file entries (host, user, port, slots, line), as JSON.
    hosts: list[dict[str, Any]]
    ssh: dict[str, Any] = field(default_factory=dict)
    state: JobState = JobState.LAUNCHING
    exit_cause: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    restarts: int = 0
    resumed_from: str | None = None

    def __post_init__(self) -> None:
        self.state = JobState(self.state)

    @property
    def entries(self) -> list[HostEntry]:
        return entries_of(self.hosts)

    @property
    def python(self) -> str:
        return self.spec.get("python") or "python3"

    @property
    def setup(self) -> str | None:
        return self.spec.get("setup")

    @property
    def output_dir(self) -> str:
        return self.spec.get("output_dir") or "output"

    @property
    def fanout(self) -> int:
        return self.ssh.get("fanout", 64)

    def node(self, host: str) -> NodePlan:
        return self.plan.node(host)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "job_dir": self.job_dir, "transport": self.transport,
            "state": self.state, "exit_cause": self.exit_cause, "created_at": self.created_at,
            "started_at": self.started_at, "ended_at": self.ended_at, "restarts": self.restarts,
            "resumed_from": self.resumed_from, "world_size": self.plan.world_size,
            "nodes": [n.host for n in self.plan.nodes],
        }

    # -- the database row (JSON in, typed out)

    def to_row(self) -> tuple:
        return (self.id, self.name, self.job_dir, self.transport, json.dumps(self.spec),
                json.dumps(self.plan.to_json()), json.dumps(self.hosts), json.dumps(self.ssh),
                str(self.state), self.exit_cause, self.created_at, self.started_at, self.ended_at,
                self.restarts, self.resumed_from)

    @classmethod
    def from_row(cls, row: tuple) -> JobRecord:
        (id_, name, job_dir, transport, spec, plan, hosts, ssh, state, cause, created, started, ended,
         restarts, resumed) = row
        host_list = json.loads(hosts)
        return cls(id_, name, job_dir, transport, json.loads(spec),
                   LaunchPlan.from_json(json.loads(plan), entries_of(host_list)), host_list,
                   json.loads(ssh), JobState(state), cause, created, started, ended, restarts, resumed)


def entries_of(hosts: list[dict[str, Any]]) -> list[HostEntry]:
    return [HostEntry(h["host"], h.get("user"), h.get("port"), h.get("slots"), h.get("line", 0))
            for h in hosts]


def hosts_of(entries: list[HostEntry]) -> list[dict[str, Any]]:
    return [{"host": e.host, "user": e.user, "port": e.port, "slots": e.slots, "line": e.line}
            for e in entries]
