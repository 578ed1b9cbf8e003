"""The web layer: the Flask app (webhook intake, API, health, metrics) and authentication."""
