"""Circuit breakers: which integration points are held back, and closing one by hand."""

from __future__ import annotations

from fastapi import APIRouter, Path

from orchestration.core.errors import NotFoundError
from orchestration.core.models import InterventionRecord
from orchestration.resilience.breakers import reset_breakers
from orchestration.store import Store
from orchestration.web import schemas
from orchestration.web.api.interventions import actor_of
from orchestration.web.auth import CurrentPrincipal
from orchestration.web.deps import StoreDep

router = APIRouter(tags=["circuit breakers"])

BreakerKey = Path(min_length=1, max_length=500, description="The breaker's key, e.g. shell:git.")


def last_resets(store: Store) -> dict[str, InterventionRecord]:
    """Each breaker's latest reset by hand (store-wide interventions, oldest first)."""
    return {
        str(i.params.get("key")): i
        for i in store.interventions(store_wide=True)
        if i.action == "breaker_reset"
    }


@router.get("/breakers", response_model=schemas.BreakersOut)
def list_breakers(store: StoreDep) -> schemas.BreakersOut:
    """Every circuit breaker, by key, with its last reset: as `orch breakers list --json`."""
    resets = last_resets(store)
    return schemas.BreakersOut(
        breakers=[schemas.breaker_out(b, resets.get(b.key)) for b in store.breakers()]
    )


def reset_one(store: Store, key: str, reason: str, actor: str) -> schemas.BreakerOut:
    """Close one breaker, recorded as an intervention (404 for an unknown key)."""
    reset_breakers(store, [key], actor=actor, reason=reason)
    breaker = store.breaker(key)
    if breaker is None:  # deleted meanwhile
        raise NotFoundError(f"no circuit breaker '{key}'")
    return schemas.breaker_out(breaker, last_resets(store).get(key))


@router.post("/breakers/{key:idpath}/reset", response_model=schemas.BreakerResetOut)
def reset_breaker(
    body: schemas.BreakerResetIn,
    principal: CurrentPrincipal,
    store: StoreDep,
    key: str = BreakerKey,
) -> schemas.BreakerResetOut:
    """Close the breaker by hand (as `orch breakers reset KEY`): work waiting on it goes on."""
    breaker = reset_one(store, key, body.reason, actor_of(body.actor, principal))
    return schemas.BreakerResetOut(breaker=breaker)
