"""Transports behind one async Connector interface (see base.py)."""
