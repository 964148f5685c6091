"""The program's concepts and their rules, pure (no I/O): the episode aggregate (episode.py), what the hospital
says about a stay (stay.py), matching peers with clients (matching.py) and the words they use (vocabulary.py)."""
