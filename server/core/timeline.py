"""The units of the media timeline, one owner each: what the encoder, the packager and the playlists count in.

Its own module (no package __init__ to run), so the encoder can use them without loading the playlist
templates: a remote worker never imports Jinja2.
"""

VIDEO_TIMESCALE = 90_000  # ticks per second of every video track (tfdt, MPD timescale)
AUDIO_TIMESCALE = 48_000  # AAC at 48 kHz: one tick per sample
AAC_FRAME = 1024  # samples (48 kHz ticks) in one AAC-LC frame: a segment's audio holds whole frames
