"""How long an answer may be kept, one owner for each lifetime the web layer sends.

The shipped nginx states the same values for the files it serves itself (deploy/nginx/team03.conf's
Cache-Control map); tests/integration/test_published_playlists.py compares its answers with the app's.
"""

YEAR = 31_536_000  # seconds: what "immutable" media and hashed assets are kept for
LIVE = "public, max-age=1"  # a playlist that can still change
FINISHED = "public, max-age=3600"  # a rendered answer of a finished video
IMMUTABLE = f"public, max-age={YEAR}, immutable"  # media and content-hashed assets: their names never change
