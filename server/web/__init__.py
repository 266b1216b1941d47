"""The HTTP side: the app factory, the one route table (api/), what players and admins are answered."""
