"""The chat's views: conversations and their partials, the prompt library, the token inspector's API."""
