"""Integrations with other systems: outbound signed webhooks to CRMs, ERPs and the like.

``service`` owns endpoints and the fan-out of outbox events into deliveries, ``delivery`` sends
them (Standard Webhooks signatures, retries) and checks signatures, ``api`` is the HTTP API.
"""
