"""Property: customers are exactly the connected components of the shared-identity graph.

For any sequence of identify calls, two values belong to the same customer if and only if a
chain of calls links them (blocked values link nothing), and undoing the last merge splits off
exactly the customer that merge took in, as it was before.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core import service as core_service
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.models import Identity, Merge

EMAILS = [("email", f"cliente{n}@example.es") for n in range(5)]
PHONES = [("phone", f"+3461000000{n}") for n in range(5)]
ANONYMOUS = [("anonymous", f"device-{n}") for n in range(3)]
BLOCKED = ("email", "test@test.com")
VALUES = [*EMAILS, *PHONES, *ANONYMOUS, BLOCKED]

calls_strategy = st.lists(
    st.lists(st.sampled_from(VALUES), min_size=1, max_size=3), min_size=1, max_size=8
)

Partition = set[frozenset[tuple[str, str]]]


def components(calls: list[list[tuple[str, str]]]) -> Partition:
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(value: tuple[str, str]) -> tuple[str, str]:
        while parent[value] != value:
            value = parent[value]
        return value

    for call in calls:
        usable = [value for value in call if value != BLOCKED]
        for value in usable:
            parent.setdefault(value, value)
        for value in usable[1:]:
            parent[find(value)] = find(usable[0])
    groups: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for value in parent:
        groups.setdefault(find(value), set()).add(value)
    return {frozenset(group) for group in groups.values()}


async def partition(session: AsyncSession, tenant_id: str) -> Partition:
    rows = await session.execute(
        select(Identity.customer_id, Identity.kind, Identity.value).where(
            Identity.tenant_id == tenant_id
        )
    )
    groups: dict[str, set[tuple[str, str]]] = {}
    for customer_id, kind, value in rows.all():
        groups.setdefault(customer_id, set()).add((kind, value))
    return {frozenset(group) for group in groups.values()}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=calls_strategy)
async def test_customers_are_the_components_and_unmerge_restores(
    sessionmaker: async_sessionmaker[AsyncSession], calls: list[list[tuple[str, str]]]
) -> None:
    async with sessionmaker() as session, session.begin():
        row, _ = await core_service.create_tenant(session, name="Propiedades")
        row.identity_limits = {"*": 100}
        await customers.block_value(
            session, TenantContext.from_row(row), kind=BLOCKED[0], value=BLOCKED[1], reason=None
        )
        tenant = TenantContext.from_row(row)

    snapshots: list[Partition] = []
    for call in calls:
        async with sessionmaker() as session:
            snapshots.append(await partition(session, tenant.id))
        async with sessionmaker() as session, session.begin():
            await customers.identify(session, tenant, identities=call)

    async with sessionmaker() as session:
        final = await partition(session, tenant.id)
        assert final == components(calls)
        last_merge = await session.scalar(
            select(Merge).where(Merge.tenant_id == tenant.id).order_by(Merge.id.desc()).limit(1)
        )
    if last_merge is None:
        return
    before_call = snapshots[last_merging_call(calls)]

    async with sessionmaker() as session, session.begin():
        await customers.unmerge(
            session, tenant, customer_id=last_merge.merged_id, merge_id=last_merge.id
        )
    async with sessionmaker() as session:
        after = await partition(session, tenant.id)
        split_off = frozenset(
            (kind, value)
            for kind, value in (
                await session.execute(
                    select(Identity.kind, Identity.value).where(
                        Identity.customer_id == last_merge.merged_id
                    )
                )
            ).all()
        )
    assert split_off in before_call, "the unmerged customer is not as it was before the merge"
    joined = next(group for group in final if split_off <= group)
    assert after == (final - {joined}) | {split_off, joined - split_off}


def last_merging_call(calls: list[list[tuple[str, str]]]) -> int:
    """The index of the last call that joined two or more existing customers."""
    last = -1
    for index, call in enumerate(calls):
        before = components(calls[:index])
        touched = {group for group in before for value in call if value in group}
        if len(touched) >= 2:
            last = index
    assert last >= 0
    return last
