"""Services that read aggregates from the database and hand them to analysis/."""
