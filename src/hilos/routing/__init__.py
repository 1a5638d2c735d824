"""The contact center: queues, skills, presence, capacity, assignment, and SLA policies and timers.

Staffing arithmetic (``erlang``) and business-hours arithmetic (``hours``) are pure functions
that the routing engine, the SLA timers (``sla``), the staffing pages and the benchmarks share.
"""
