"""Conversations that follow the customer across channels, their messages and agent replies.

The continuity rule: an inbound message joins the customer's open, pending or snoozed
conversation whatever channel it came from; a conversation resolved less than the tenant's
reopen window ago reopens; otherwise a new one starts. A customer has at most one active
conversation (a partial unique index enforces it, so two concurrent messages cannot start two).
"""
