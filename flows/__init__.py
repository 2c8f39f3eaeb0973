"""Prefect flows: the lifecycle and one subflow per stage, composed from ``tasks``."""
