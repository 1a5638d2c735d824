"""Hilos: one customer, one conversation, one stock across every channel."""

__version__ = "0.1.0"
