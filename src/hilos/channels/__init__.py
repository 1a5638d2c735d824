"""Channels: the tenant's registered channel instances, and one module per provider.

A channel instance is one WhatsApp number, one Instagram account, one store, one mailbox. Every
message records the instance it came through, so a conversation can list the channels it crossed
and a reply knows where to go.
"""
