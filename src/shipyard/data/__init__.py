"""Data: warehouse tables as users see them, their versions, loading."""
