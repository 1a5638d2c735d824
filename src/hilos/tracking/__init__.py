"""Segment-compatible events API: identify, track, page, screen, alias and batch.

Existing analytics SDKs point at Hilos and their calls land on the customer's timeline. Every
call is idempotent on its ``messageId``; an ``anonymousId`` is an identity of kind
``anonymous``, so when it is later identified, its earlier events join the customer through the
ordinary merge.
"""
