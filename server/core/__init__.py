"""The pure core: planning, ffmpeg argv, playlists, rules and wire types. Imports no framework or client library."""
