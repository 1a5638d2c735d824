"""Customers: profiles, identities and their resolution, reversible merges, consents, timeline.

The rule this domain enforces: one identity value (an email, an E.164 phone, a WhatsApp id...)
belongs to at most one customer per tenant, so any two records that share a value are the same
customer. Blocked values never link anyone, and a per-kind limit stops a shared family email from
gluing a household into one "blob" customer.
"""
