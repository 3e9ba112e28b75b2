"""KPI store: definitions, values, targets, progress."""
