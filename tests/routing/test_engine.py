"""The routing engine's rules, decided in memory in virtual time (no database, no clock).

Each test builds a small tenant (queues, agents with skills, capacity and load, waiting
conversations) and checks who is offered what, and why.
"""

from __future__ import annotations

from typing import Any

from hilos.routing.engine import (
    Agent,
    Queue,
    Ring,
    RoutingState,
    Waiting,
    pick_queue,
    rank_of,
)

LANGUAGES = frozenset({"es", "en", "fr", "pt"})
T0 = 1_000_000.0


def queue(**fields: Any) -> Queue:
    values: dict[str, Any] = {
        "id": "q-es",
        "name": "Soporte ES",
        "channel_kinds": frozenset({"whatsapp", "web_chat", "email", "phone"}),
        "skills": {"es": 1},
    }
    values.update(fields)
    return Queue(**values)


def agent(agent_id: str, **fields: Any) -> Agent:
    values: dict[str, Any] = {"id": agent_id, "name": agent_id.title(), "skills": {"es": 2}}
    values.update(fields)
    return Agent(**values)


def waiting(conversation_id: str, **fields: Any) -> Waiting:
    values: dict[str, Any] = {
        "conversation_id": conversation_id,
        "queue_id": "q-es",
        "channel_kind": "whatsapp",
        "rank": T0,
        "queued_at": T0,
    }
    values.update(fields)
    return Waiting(**values)


def test_the_last_agent_who_served_the_customer_gets_them_first_when_online_with_room() -> None:
    state = RoutingState(
        queues=[queue()],
        agents=[
            agent("ana", idle_since=T0 - 600),  # idler and emptier than Bruno
            agent("bruno", load={"whatsapp": 2}, idle_since=T0 - 5),
        ],
        waiting=[waiting("c1", sticky_agent_id="bruno")],
    )
    offer = state.choose_agent("c1", now=T0)
    assert offer is not None
    assert (offer.agent_id, offer.rule) == ("bruno", "sticky")
    assert offer.reason == (
        "sticky: Bruno served this customer last and is online with room (1/3 whatsapp free)"
    )


def test_a_sticky_agent_who_is_full_offline_or_not_in_the_queue_is_passed_over() -> None:
    for sticky in (
        agent("bruno", load={"whatsapp": 3}),
        agent("bruno", online=False),
        agent("bruno", skills={"en": 3}),
    ):
        state = RoutingState(
            queues=[queue()],
            agents=[agent("ana"), sticky],
            waiting=[waiting("c1", sticky_agent_id="bruno")],
        )
        offer = state.choose_agent("c1", now=T0)
        assert offer is not None
        assert (offer.agent_id, offer.rule) == ("ana", "skills")


def test_only_agents_with_the_required_skill_levels_are_offered_the_conversation() -> None:
    state = RoutingState(
        queues=[queue(skills={"es": 2, "billing": 1})],
        agents=[
            agent("ana", skills={"es": 1, "billing": 3}, idle_since=T0 - 900),
            agent("bruno", skills={"es": 3}, idle_since=T0 - 900),
            agent("carla", skills={"es": 2, "billing": 1}, idle_since=T0 - 10),
        ],
        waiting=[waiting("c1")],
    )
    offer = state.choose_agent("c1", now=T0)
    assert offer is not None
    assert offer.agent_id == "carla"
    assert offer.reason.startswith("skills billing≥1, es≥2; most free capacity 3/3 whatsapp")


def test_the_most_free_capacity_wins_then_the_longest_idle() -> None:
    state = RoutingState(
        queues=[queue()],
        agents=[
            agent("ana", load={"whatsapp": 1}, idle_since=T0 - 3000),
            agent("bruno", idle_since=T0 - 340),
            agent("carla", idle_since=T0 - 60),
        ],
        waiting=[waiting("c1"), waiting("c2", rank=T0 + 1), waiting("c3", rank=T0 + 2)],
    )
    first = state.choose_agent("c1", now=T0)
    assert first is not None
    assert first.agent_id == "bruno"
    assert first.reason == (
        "skills es≥1; most free capacity 3/3 whatsapp; idle 340 s; 3 agents with room"
    )
    # Bruno now holds an offer (2 free, just busy): Carla has 3 free.
    second = state.choose_agent("c2", now=T0)
    assert second is not None
    assert second.agent_id == "carla"
    # Ana, Bruno and Carla all have 2 free: Ana has been idle longest.
    third = state.choose_agent("c3", now=T0)
    assert third is not None
    assert third.agent_id == "ana"


def test_capacity_is_per_channel_kind_and_a_voice_call_blocks_everything_else() -> None:
    state = RoutingState(
        queues=[queue()],
        agents=[agent("ana", load={"phone": 1}), agent("bruno", load={"whatsapp": 3})],
        waiting=[
            waiting("chat"),
            waiting("mail", channel_kind="email"),
            waiting("call", channel_kind="phone"),
        ],
    )
    # Ana is on a call: no chat and no email for her; Bruno's chats are full but email is not.
    chat = state.choose_agent("chat", now=T0)
    assert chat is None
    mail = state.choose_agent("mail", now=T0)
    assert mail is not None
    assert mail.agent_id == "bruno"
    # A second call cannot reach Ana (voice capacity 1); Bruno, busy with chats, can take it.
    call = state.choose_agent("call", now=T0)
    assert call is not None
    assert call.agent_id == "bruno"
    # ...and from then on Bruno is on a call too: nothing else reaches him.
    state.add(waiting("mail-2", channel_kind="email", rank=T0 + 5))
    assert state.choose_agent("mail-2", now=T0) is None


def test_priority_moves_a_conversation_forward_and_ageing_keeps_the_old_ones_from_starving() -> (
    None
):
    step = 120.0
    old_normal = rank_of(waiting_since=T0, priority=0, ageing_step=step)
    vip_soon_after = rank_of(waiting_since=T0 + 60, priority=1, ageing_step=step)
    vip_much_later = rank_of(waiting_since=T0 + 600, priority=1, ageing_step=step)
    state = RoutingState(
        queues=[queue()],
        agents=[agent("ana", capacity={"whatsapp": 1}, load={"whatsapp": 1})],
        waiting=[
            waiting("old-normal", rank=old_normal, queued_at=T0),
            waiting("vip-soon-after", rank=vip_soon_after, queued_at=T0 + 60),
            waiting("vip-much-later", rank=vip_much_later, queued_at=T0 + 600),
        ],
    )
    order = []
    for _ in range(3):
        state.finish("ana", "whatsapp", now=T0 + 700)
        offer = state.choose_conversation("ana", now=T0 + 700)
        assert offer is not None
        order.append(offer.conversation_id)
    # A VIP who arrived a minute after goes first; one who arrived ten minutes after does not
    # overtake a customer who has waited that long.
    assert order == ["vip-soon-after", "old-normal", "vip-much-later"]


def test_a_conversation_whose_sla_falls_due_soon_goes_first() -> None:
    assert rank_of(waiting_since=T0, priority=0, ageing_step=120, sla_due=T0 + 60) == T0 - 540
    assert rank_of(waiting_since=T0, priority=0, ageing_step=120, sla_due=T0 + 3600) == T0


def test_rings_relax_the_required_skills_as_the_wait_grows() -> None:
    state = RoutingState(
        queues=[queue(skills={"es": 3}, rings=(Ring(after=60, skills={"es": 1}),))],
        agents=[agent("ana", skills={"es": 1})],
        waiting=[waiting("c1")],
    )
    assert state.choose_agent("c1", now=T0 + 59) is None
    assert state.next_change("c1", now=T0 + 59) == T0 + 60
    offer = state.choose_agent("c1", now=T0 + 60)
    assert offer is not None
    assert offer.agent_id == "ana"
    assert offer.reason.startswith("ring 1 after 60 s: skills es≥1; most free capacity")


def test_after_the_overflow_time_a_waiting_conversation_moves_to_the_overflow_queue() -> None:
    state = RoutingState(
        queues=[
            queue(overflow_queue_id="q-general", overflow_after=300),
            queue(id="q-general", name="General", skills={}),
        ],
        agents=[agent("zoe", skills={"en": 2})],
        waiting=[waiting("c1", rank=T0 - 50)],
    )
    assert state.choose_agent("c1", now=T0 + 100) is None
    assert state.overflow("c1", now=T0 + 299) is None
    assert state.next_change("c1", now=T0 + 100) == T0 + 300
    target = state.overflow("c1", now=T0 + 300)
    assert target is not None
    assert target.id == "q-general"
    moved = state.waiting["c1"]
    assert (moved.queue_id, moved.queued_at, moved.rank) == ("q-general", T0 + 300, T0 - 50)
    offer = state.choose_agent("c1", now=T0 + 300)
    assert offer is not None
    assert (offer.agent_id, offer.queue_id) == ("zoe", "q-general")


def test_secondary_skills_serve_only_after_the_delay_and_only_when_no_primary_agent_can() -> None:
    state = RoutingState(
        queues=[queue(secondary_after=120)],
        agents=[
            agent("pablo", skills={"en": 3}, secondary_skills={"es": 1}, idle_since=T0 - 999),
            agent("ana", load={"whatsapp": 3}),
        ],
        waiting=[waiting("c1")],
    )
    assert state.choose_agent("c1", now=T0 + 119) is None
    assert state.next_change("c1", now=T0 + 119) == T0 + 120
    offer = state.choose_agent("c1", now=T0 + 120)
    assert offer is not None
    assert (offer.agent_id, offer.rule) == ("pablo", "secondary")
    assert offer.reason.startswith("secondary skills after 120 s: skills es≥1")
    # With a primary agent free, the primary agent gets it even after the delay.
    state = RoutingState(
        queues=[queue(secondary_after=120)],
        agents=[
            agent("pablo", skills={"en": 3}, secondary_skills={"es": 1}, idle_since=T0 - 999),
            agent("ana", load={"whatsapp": 2}),
        ],
        waiting=[waiting("c1")],
    )
    offer = state.choose_agent("c1", now=T0 + 500)
    assert offer is not None
    assert offer.agent_id == "ana"


def test_an_offer_not_accepted_goes_to_the_next_agent_and_comes_back_after_a_timeout() -> None:
    state = RoutingState(
        queues=[queue()],
        agents=[agent("ana", idle_since=T0 - 100), agent("bruno", idle_since=T0 - 50)],
        waiting=[waiting("c1")],
    )
    first = state.choose_agent("c1", now=T0)
    assert first is not None
    assert first.agent_id == "ana"
    assert state.agents["ana"].load == {"whatsapp": 1}
    # Ana lets it lapse: it goes to Bruno, her slot is free again.
    assert state.release("c1", now=T0 + 30, pass_until=T0 + 60) == "ana"
    assert state.agents["ana"].load == {"whatsapp": 0}
    second = state.choose_agent("c1", now=T0 + 30)
    assert second is not None
    assert second.agent_id == "bruno"
    # Bruno lets it lapse too, and nobody else is there: Ana again, once her pass runs out.
    state.release("c1", now=T0 + 45, pass_until=T0 + 75)
    assert state.choose_agent("c1", now=T0 + 59) is None
    assert state.next_change("c1", now=T0 + 59) == T0 + 60
    third = state.choose_agent("c1", now=T0 + 60)
    assert third is not None
    assert third.agent_id == "ana"


def test_nobody_is_offered_again_what_they_passed_on_before_the_pass_runs_out() -> None:
    state = RoutingState(
        queues=[queue()], agents=[agent("ana")], waiting=[waiting("c1", passed={"ana": T0 + 30})]
    )
    assert state.choose_agent("c1", now=T0 + 29) is None
    assert state.choose_conversation("ana", now=T0 + 29) is None
    assert state.next_change("c1", now=T0 + 29) == T0 + 30
    offer = state.choose_agent("c1", now=T0 + 30)
    assert offer is not None
    assert offer.agent_id == "ana"


def test_an_agent_with_room_is_offered_the_best_conversation_they_qualify_for() -> None:
    state = RoutingState(
        queues=[queue(), queue(id="q-en", name="Support EN", skills={"en": 1})],
        agents=[agent("ana", skills={"es": 2}, load={"whatsapp": 3})],
        waiting=[
            waiting("english-oldest", queue_id="q-en", rank=T0 - 100),
            waiting("spanish-chat", rank=T0),
            waiting("spanish-mail", channel_kind="email", rank=T0 + 10),
        ],
    )
    # Ana's chats are full: the oldest conversation she can take is the Spanish email.
    offer = state.choose_conversation("ana", now=T0 + 20)
    assert offer is not None
    assert offer.conversation_id == "spanish-mail"
    assert offer.reason.startswith("Ana has room (5/5 email free); first in line of Soporte ES")
    state.finish("ana", "whatsapp", now=T0 + 30)
    offer = state.choose_conversation("ana", now=T0 + 30)
    assert offer is not None
    assert offer.conversation_id == "spanish-chat"
    assert state.choose_conversation("ana", now=T0 + 30) is None


def test_members_added_by_hand_qualify_whatever_their_skills() -> None:
    state = RoutingState(
        queues=[queue(skills={"es": 5}, members=frozenset({"zoe"}))],
        agents=[agent("zoe", skills={})],
        waiting=[waiting("c1")],
    )
    offer = state.choose_agent("c1", now=T0)
    assert offer is not None
    assert (offer.agent_id, offer.rule) == ("zoe", "member")
    assert offer.reason.startswith("member of Soporte ES; skills es≥5")


def test_a_conversation_joins_the_queue_of_its_channel_and_the_customers_language() -> None:
    chats = frozenset({"whatsapp", "web_chat"})
    queues = [
        queue(id="q1", name="Support EN", skills={"en": 1}, channel_kinds=chats),
        queue(id="q2", name="General", skills={}, channel_kinds=chats),
        queue(id="q3", name="Soporte ES", skills={"es": 1, "billing": 1}, channel_kinds=chats),
        queue(id="q4", name="Voz", skills={}, channel_kinds=frozenset({"phone"})),
    ]

    def picked(kind: str, language: str | None) -> str | None:
        chosen, _ = pick_queue(queues, channel_kind=kind, language=language, languages=LANGUAGES)
        return chosen.name if chosen else None

    assert picked("whatsapp", "es") == "Soporte ES"
    assert picked("whatsapp", "en") == "Support EN"
    # Nobody speaks French: a queue that requires no language beats one requiring another.
    assert picked("whatsapp", "fr") == "General"
    assert picked("phone", "es") == "Voz"
    assert picked("sms", "es") is None
    _, why = pick_queue(queues, channel_kind="whatsapp", language="es", languages=LANGUAGES)
    assert why == "channel whatsapp, language es: queue Soporte ES (skills billing≥1, es≥1)"


def test_explaining_a_wait_names_the_requirement_and_who_could_take_it() -> None:
    state = RoutingState(
        queues=[queue(skills={"es": 2})],
        agents=[agent("ana", load={"whatsapp": 3}), agent("bruno", online=False)],
        waiting=[waiting("c1")],
    )
    assert state.choose_agent("c1", now=T0) is None
    assert state.explain_wait("c1", now=T0) == (
        "waiting in Soporte ES: skills es≥2; 1 qualified agent online, none with room in whatsapp"
    )


def test_equal_agents_are_told_apart_by_id_whatever_order_they_were_loaded_in() -> None:
    for order in (["bruno", "ana"], ["ana", "bruno"]):
        state = RoutingState(
            queues=[queue()],
            agents=[agent(name, idle_since=T0 - 60) for name in order],
            waiting=[waiting("c1")],
        )
        offer = state.choose_agent("c1", now=T0 + 1)
        assert offer is not None
        assert offer.agent_id == "ana"
