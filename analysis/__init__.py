"""Frames -> findings -> reports."""
