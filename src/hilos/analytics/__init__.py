"""Measuring how customers are served: today the sentiment of their messages (``sentiment``).

Surveys, KPIs and the omnichannel audit will live here as they land.
"""
