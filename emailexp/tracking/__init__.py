"""Tracking: signed tokens, open/click classification, and recording them."""
