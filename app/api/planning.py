"""From a checked ``POST /v1/streams`` body to the engine's plans: each slot's routes, and a
conversation's speakers and manager.

One planner for every way a stream starts (the API, and ``chorus ask`` running the engine in
its own process), so a request is routed, capped and labelled the same wherever it runs.
It is given what it needs (the catalog and the ``[server]`` limits), never the app, and
refuses a request with the ``ApiError`` naming the field, as ``app.api.bodies`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.catalog import UnknownModel
from app.engine import ConversationPlan, ManagerPlan, SlotPlan, Speaker
from app.limits import cap_max_tokens, check_messages

from .bodies import PASS_THROUGH_ROLES, ConversationBody, StreamBody, parse_stream_body
from .errors import ApiError, invalid

if TYPE_CHECKING:
    from app.catalog import Catalog
    from app.config import ServerConfig

MANAGER_PARAMS = {"max_tokens": 64}  # a pick is one name: a short answer, a small bill


def plan_body(data: object, catalog: Catalog, server: ServerConfig
              ) -> tuple[list[SlotPlan], ConversationPlan | None]:
    """A ``POST /v1/streams`` body as it came (JSON), checked and planned."""
    body = parse_stream_body(data, server.max_slots, catalog.group, max_rounds=server.max_rounds)
    return plan_stream(body, catalog, server)


def plan_stream(body: StreamBody, catalog: Catalog, server: ServerConfig
                ) -> tuple[list[SlotPlan], ConversationPlan | None]:
    """The slots' plans, and the conversation's when the body is one (its participants'
    errors named ``participants[i]``, as its body calls them)."""
    if body.conversation is None:
        return plan_slots(body, catalog, server), None
    plans = plan_slots(body, catalog, server, "participants[{i}]")
    return plans, plan_conversation(body, body.conversation, plans, catalog)


def plan_slots(body: StreamBody, catalog: Catalog, server: ServerConfig,
               target_param: str = "models[{i}]") -> list[SlotPlan]:
    """Each target's routes, with the server's limits on history and output tokens applied
    (``app.limits``). Errors name target ``i`` as ``target_param`` says: the request field
    the caller's API calls it."""
    seen: dict[str, int] = {}
    plans = []
    for i, target in enumerate(body.targets):
        where = target_param.format(i=i)
        messages = target.messages if target.messages is not None else body.messages
        check_messages(messages, server.max_messages, server.max_message_chars,
                       "messages" if target.messages is None else f"{where}.messages")
        params = cap_max_tokens({**body.params, **target.params}, server.max_tokens)
        try:
            routes = catalog.route(target.model, messages, params, target.fallbacks)
        except UnknownModel as exc:
            raise ApiError(400, "unknown_model", str(exc), where) from exc
        for route in routes:
            for m in messages:
                allowed = PASS_THROUGH_ROLES.get(m.role)
                if allowed is not None and route.provider.config.type not in allowed:
                    raise invalid(f"role {m.role!r} is not supported by {route.ref}", where)
        seen[target.model] = seen.get(target.model, 0) + 1
        label = target.label or (target.model if seen[target.model] == 1
                                 else f"{target.model} #{seen[target.model]}")
        plans.append(SlotPlan(i, label, routes))
    return plans


def plan_conversation(body: StreamBody, talk: ConversationBody, plans: list[SlotPlan],
                      catalog: Catalog) -> ConversationPlan:
    """The participants' plans (resolved once, by ``plan_slots``) as speakers, and the
    manager's routes, its answer capped at ``MANAGER_PARAMS``."""
    manager = None
    if talk.manager is not None:
        try:
            routes = catalog.route(talk.manager, body.messages, MANAGER_PARAMS)
        except UnknownModel as exc:
            raise ApiError(400, "unknown_model", str(exc), "manager.model") from exc
        manager = ManagerPlan(routes, talk.manager_system)
    speakers = tuple(Speaker(plan, system) for plan, system in zip(plans, talk.systems,
                                                                      strict=True))
    return ConversationPlan(speakers, body.messages, talk.rounds, talk.turn_order, manager,
                            talk.stop_on_error)
