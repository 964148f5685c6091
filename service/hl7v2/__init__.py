"""HL7 v2 over MLLP: the listener (listener.py) and the original-mode acknowledgements it sends (ack.py)."""
