"""Moving reserved stock from one location to another: a warehouse's units travelling to the
store where the customer picks them up.

Part of the stock ledger's rules (``stock``): the source's ``on_hand`` and ``reserved`` drop
together, the destination's rise together, and each side writes a ``transfer`` row to the ledger
keyed by the reservation, so a repeated transfer changes nothing and the ledger of each location
still sums to its ``on_hand``. The reservation itself moves, so it keeps holding the units for
the same order at their new place.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import stock
from hilos.commerce.models import Location
from hilos.commerce.stock_models import Reservation
from hilos.core.clock import now
from hilos.core.errors import Conflict
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext
from hilos.customers.service import insert_for


async def transfer_reservation(
    session: AsyncSession, tenant: TenantContext, reservation_id: str, *, to_location: str
) -> Reservation:
    """Move a held reservation's units to ``to_location``; moving it there again is a no-op."""
    reservation = await stock.get_reservation(session, tenant, reservation_id)
    if reservation.location_code == to_location:
        return reservation
    if reservation.status != "held":
        raise Conflict(
            f"reservation {reservation_id} is {reservation.status}; its units cannot travel",
            code=f"reservation_{reservation.status}",
        )
    destination = (
        await session.execute(
            select(Location.id).where(Location.tenant_id == tenant.id, Location.code == to_location)
        )
    ).scalar_one()
    moment = now()
    levels, movements = stock._LEVELS, stock._MOVEMENTS
    source_level = (
        await session.execute(
            update(levels)
            .where(
                levels.c.tenant_id == tenant.id,
                levels.c.variant_id == reservation.variant_id,
                levels.c.location_id == reservation.location_id,
            )
            .values(
                on_hand=levels.c.on_hand - reservation.quantity,
                reserved=levels.c.reserved - reservation.quantity,
                updated_at=moment,
            )
            .returning(levels.c.on_hand, levels.c.reserved, levels.c.safety_stock)
        )
    ).one()
    dialect = session.get_bind().dialect.name
    destination_level = (
        await session.execute(
            insert_for(dialect, levels)
            .values(
                tenant_id=tenant.id,
                variant_id=reservation.variant_id,
                location_id=destination,
                on_hand=reservation.quantity,
                reserved=reservation.quantity,
                safety_stock=0,
                updated_at=moment,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id", "variant_id", "location_id"],
                set_={
                    "on_hand": levels.c.on_hand + reservation.quantity,
                    "reserved": levels.c.reserved + reservation.quantity,
                    "updated_at": moment,
                },
            )
            .returning(levels.c.on_hand, levels.c.reserved, levels.c.safety_stock)
        )
    ).one()
    for location_id, quantity, on_hand, side in (
        (reservation.location_id, -reservation.quantity, source_level[0], "out"),
        (destination, reservation.quantity, destination_level[0], "in"),
    ):
        await session.execute(
            movements.insert().values(
                id=new_id(),
                tenant_id=tenant.id,
                variant_id=reservation.variant_id,
                location_id=location_id,
                quantity=quantity,
                reason="transfer",
                idempotency_key=f"transfer:{reservation.id}:{side}",
                on_hand=on_hand,
                reservation_id=reservation.id,
                created_at=moment,
            )
        )
    source_code = reservation.location_code
    await session.execute(
        update(Reservation)
        .where(Reservation.id == reservation.id)
        .values(location_id=destination, location_code=to_location, updated_at=moment)
        .execution_options(synchronize_session=False)
    )
    for code, level in ((source_code, source_level), (to_location, destination_level)):
        await stock._changed(
            session,
            tenant,
            sku=reservation.sku,
            location=code,
            on_hand=level[0],
            reserved=level[1],
            safety_stock=level[2],
        )
    await session.refresh(reservation)
    return reservation
