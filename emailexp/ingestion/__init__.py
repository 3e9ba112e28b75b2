"""Services that take client data in: experiments, assignment, sends, conversions, CSV import."""
