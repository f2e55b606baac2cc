"""Widgets only: they bind to state objects and call their actions."""
