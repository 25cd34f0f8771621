"""Web doors: the company form and the partner (ombudsman) API."""
