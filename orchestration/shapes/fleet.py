"""The JSON shapes of agents' figures, assignments, health and waves (API and `--json`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)


class AssignmentOut(_Out):
    task: str
    attempt: int
    agent: str
    strategy: str
    reason: str = Field(description="Why this agent: the strategy's words.")
    predicted: float | None = Field(description="Predicted success (Beta mean) for the kind.")
    waited_seconds: float = Field(description="How long the task waited for a free agent.")
    scores: dict[str, float] = Field(description="Each free candidate's score.")


class AgentOut(_Out):
    agent: str
    attempts: int
    succeeded: int
    success_rate: float | None
    mean_predicted: float | None
    calibration_error: float | None = Field(description="|mean predicted - success rate|")
    mean_duration_seconds: float | None
    p95_duration_seconds: float | None
    cost: float


class AnomalyOut(_Out):
    kind: str
    subject: str
    message: str
    task: str | None
    at: str
    figures: dict[str, Any]


class HealthPartsOut(_Out):
    success: float
    availability: float
    prediction: float
    load_balance: float


class WaveHealthOut(_Out):
    wave: int
    tasks: list[str]
    score: float
    parts: HealthPartsOut


class HealthOut(_Out):
    run: str
    score: float = Field(description="0-100, the weighted mean of the parts.")
    parts: HealthPartsOut
    weights: dict[str, float]
    attempts: int
    success_rate: float | None
    calibration_error: float | None
    mean_duration_seconds: float | None
    p95_duration_seconds: float | None
    cost: float
    agents: list[AgentOut]
    waves: list[WaveHealthOut]
    anomalies: list[AnomalyOut]


class PlannedWavesOut(_Out):
    plan: str
    strategy: str
    waves: list[list[str]]
    assignment: dict[str, str | None] = Field(description="Task -> agent the strategy would pick.")
    loads: dict[str, float] = Field(description="Agent -> expected seconds / max concurrent.")
    load_balance: float = Field(description="Jain's index of the loads, 0-100.")
