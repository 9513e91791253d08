"""The long-running service: jobs defined as rows in the warehouse, webhooks, metrics and a status page."""
