"""The worker wing: the process operators start, its job threads, the encode, and the origins it talks to."""
