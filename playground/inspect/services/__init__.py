"""Services of the inspect app, one module per tool; the only modules here that import llmcore."""
