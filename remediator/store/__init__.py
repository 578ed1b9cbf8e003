"""The durable ledger: incidents, decisions, actions, audit."""
