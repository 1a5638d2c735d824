"""``GET /v1/files/{file_id}``: the bytes of an attachment Hilos keeps (an email's files).

Tenant-scoped like every read: another tenant's file answers 404. The caller is an API key or
a signed-in console agent (so attachment links work in the console). The file is always
served as a download (``Content-Disposition: attachment``, ``nosniff`` and a sandboxing CSP):
its bytes and declared type come from whoever sent the email, and an HTML or SVG file shown
inline on Hilos's origin could run script there.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hilos.channels.models import StoredFile
from hilos.core.auth import authenticate, presented_key
from hilos.core.deps import DbSession
from hilos.core.tenancy import TenantContext, get_owned

router = APIRouter(prefix="/v1/files", tags=["files"])

# The console's session cookie (hilos.web.console.SESSION_COOKIE).
_CONSOLE_COOKIE = "hilos_session"


async def _caller_tenant(request: Request, session: DbSession) -> TenantContext:
    if presented_key(request) is None:
        token = request.cookies.get(_CONSOLE_COOKIE)
        if token:
            from hilos.web.service import signed_in_agent

            agent = await signed_in_agent(session, token)
            if agent is not None:
                return agent.tenant
    return (await authenticate(request, session)).tenant


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one (RFC 6266, RFC 5987)."""
    fallback = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in filename
    )
    return (
        f"attachment; filename=\"{fallback or 'attachment'}\"; filename*=UTF-8''{quote(filename)}"
    )


@router.get(
    "/{file_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_file(file_id: str, request: Request, session: DbSession) -> Response:
    """Download a stored attachment."""
    tenant = await _caller_tenant(request, session)
    stored = await get_owned(session, StoredFile, file_id, tenant, what="file")
    return Response(
        content=stored.content,
        media_type=stored.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": content_disposition(stored.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )
