"""The jobs app's services: the only modules of the app that import llmcore."""
